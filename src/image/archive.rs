//! archive (in progress)
