//! recipe (in progress)
