//! `GET /stream`: Server-Sent Events, one `stats` event a second with the
//! `/stats/requests` JSON and the newest chart point, so the page updates
//! live without polling. One task renders the message once a second for
//! every subscriber (a hundred open tabs cost one rendering, not a
//! hundred); it runs only while someone listens, and there is only ever
//! one (`AppState::publishing`).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::json;
use swarmer_engine::LockExt;

use crate::api::stats::requests_value;
use crate::state::AppState;

const INTERVAL: Duration = Duration::from_secs(1);

pub async fn stream(State(state): State<Arc<AppState>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut updates = state.stream.subscribe();
    if state.publishing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        tokio::spawn(publish(state.clone()));
    }
    // The first event goes out at once (the latest rendering, at most a
    // second old; rendered now if there is none), then one per rendering.
    if updates.borrow().is_empty() {
        state.stream.send_replace(Arc::from(message(&state).to_string()));
    }
    updates.mark_changed();
    let events = futures_util::stream::unfold(updates, |mut updates| async move {
        updates.changed().await.ok()?;
        let message = updates.borrow_and_update().clone();
        Some((Ok(Event::default().event("stats").data(&*message)), updates))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// Render once a second while anyone listens; end when the last one leaves.
async fn publish(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.tick().await; // the first tick is immediate; the subscriber already has a fresh message
    loop {
        tick.tick().await;
        if state.stream.send(Arc::from(message(&state).to_string())).is_err() {
            // Nobody listens: stop, unless someone subscribed just now and
            // saw this publisher still running.
            state.publishing.store(false, Ordering::Release);
            if state.stream.receiver_count() == 0
                || state.publishing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err()
            {
                return;
            }
        }
    }
}

/// `/stats/requests` plus the newest chart point and the host.
fn message(state: &AppState) -> serde_json::Value {
    let mut message = requests_value(state);
    {
        let store = state.runner.stats().lock_or_recover();
        message["history_point"] = store.history.points().last().map(swarmer_report::live::history_point).into();
    }
    message["host"] = json!(state.runner.host());
    message
}
