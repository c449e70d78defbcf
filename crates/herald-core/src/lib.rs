//! herald's core: what a push gateway is made of, without any I/O.
//!
//! The domain types (`model`), the traits every backend and provider implements
//! (`store`, `provider`), and the pipeline that joins them: `fan_out` turns one
//! notification into queued deliveries, the `dispatcher` hands deliveries to
//! providers under per-transport concurrency limits, and `retry` decides what a
//! failed attempt becomes. `rate` is the token bucket per recipient that
//! the network sources limit count-like pushes with. Networks, databases
//! and HTTP live in other crates.

pub mod dispatcher;
pub mod fan_out;
pub mod model;
pub mod provider;
pub mod rate;
pub mod retry;
pub mod store;
pub mod time;

pub use model::{
    Account, AppId, Delivery, Device, Message, NewDelivery, NewDevice, Notification, Platform,
    Priority, Transport,
};
pub use provider::{Outcome, Provider};
pub use store::{EnqueueReport, Queue, Settlement, Store, StoreError};
