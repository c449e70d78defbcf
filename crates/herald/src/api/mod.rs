//! The HTTP API's pieces: the JSON error convention and the admin routes.

pub mod admin;
pub mod error;
pub mod gorush;
pub mod json;
pub mod xrpc;
