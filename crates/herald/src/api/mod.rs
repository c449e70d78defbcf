//! The HTTP API's pieces: the JSON error convention, the admin routes and
//! the compatible APIs' edges (gorush, XRPC, Mostro).

pub mod admin;
pub mod error;
pub mod gorush;
pub mod json;
pub mod mostro;
pub mod xrpc;
