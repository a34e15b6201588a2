//! (to be built: see the issue that owns this module)
