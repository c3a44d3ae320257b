//! The pod side of podlog: what runs one agent conversation on top of the
//! store and the sink.
//!
//! [`script`] holds a deterministic scripted conversation: the demo and the
//! tests drive pods with it, so they need no model.

pub mod script;
