//! unpack (in progress)
