//! REST subset (to be filled in).

use axum::Router;

use super::faults::Faults;
use super::store::Store;

#[derive(Clone)]
pub struct RestState {
    pub store: Store,
    pub faults: Faults,
}

pub fn router(state: RestState) -> Router {
    Router::new().with_state(state)
}
