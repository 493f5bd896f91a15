//! One file per lifecycle verb.
