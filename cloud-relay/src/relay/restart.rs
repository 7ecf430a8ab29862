//! The operator's side of loops that ended without answers: `manifest export
//! --not-reviewed` (the records [`super::collector`] wrote, for events that still have
//! no manifest row) and `loops restart` (a fresh human loop for the same stored image,
//! named as [`super::loops`] says). Both read S3 and A2I only: any machine with the
//! relay's config can run them, with or without a relay running.

use protocol::a2i::InputContent;
use protocol::EventMeta;

use super::a2i::{A2iClient, LoopStart, LoopState};
use super::keys::KeyLayout;
use super::loops::{loop_name, parse_loop_name, NotReviewed};
use super::s3::S3Store;
use crate::config::Config;
use protocol::json::parse_s3_uri;

/// Why a loop could not be restarted (the others still are).
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("{0:?} is not a human loop name the relay made (ea2i-<event id>[-r<n>])")]
    NotOurs(String),
    #[error("human loop {name} is {state}; only Stopped or Failed loops are restarted")]
    NotEnded { name: String, state: String },
    #[error("human loop {name}: the metadata of event {event_id} is not in s3://{bucket} (looked at {keys})")]
    NoEvent {
        name: String,
        event_id: protocol::EventId,
        bucket: String,
        keys: String,
    },
    #[error("human loop {name}: {message}")]
    Service { name: String, message: String },
}

/// What `loops restart` did with one loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restarted {
    /// A new loop was started.
    Started { from: String, to: String },
    /// The new loop existed already (restarted before).
    Existed { from: String, to: String },
}

/// The not-reviewed records whose events have no manifest row, oldest loop first.
pub async fn not_reviewed(config: &Config, store: &S3Store) -> anyhow::Result<Vec<NotReviewed>> {
    let layout = KeyLayout::new(&config.s3);
    let prefix = layout.not_reviewed_prefix();
    let keys = store
        .list(&prefix)
        .await
        .map_err(|e| anyhow::anyhow!("listing s3://{}/{prefix}: {e}", layout.bucket))?;
    let mut records = Vec::new();
    for key in keys {
        let where_ = || format!("s3://{}/{key}", layout.bucket);
        let Some(bytes) = store
            .get(&key)
            .await
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", where_()))?
        else {
            continue;
        };
        let record =
            NotReviewed::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", where_()))?;
        let row = layout.row_key(&record.event_id);
        let reviewed = store
            .exists(&row)
            .await
            .map_err(|e| anyhow::anyhow!("reading s3://{}/{row}: {e}", layout.bucket))?;
        if !reviewed {
            records.push(record);
        }
    }
    records.sort_by(|a, b| {
        (&a.loop_created_at, &a.human_loop_name).cmp(&(&b.loop_created_at, &b.human_loop_name))
    });
    Ok(records)
}

/// Writes [`not_reviewed`] as JSON lines; returns how many.
pub async fn export_not_reviewed(
    config: &Config,
    store: &S3Store,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<usize> {
    let records = not_reviewed(config, store).await?;
    for r in &records {
        out.write_all(r.to_line().as_bytes())?;
    }
    out.flush()?;
    Ok(records.len())
}

/// The stored event behind a loop: its index entry, else (older events) the
/// metadata next to the image a not-reviewed record names.
async fn stored_event(
    store: &S3Store,
    layout: &KeyLayout,
    name: &str,
    event_id: protocol::EventId,
    source_ref: Option<&str>,
) -> Result<EventMeta, RestartError> {
    let mut keys = vec![layout.event_index_key(&event_id)];
    if let Some((_, key)) = source_ref.and_then(parse_s3_uri) {
        if let Some((base, _ext)) = key.rsplit_once('.') {
            keys.push(format!("{base}.json"));
        }
    }
    for key in &keys {
        let got = store.get(key).await.map_err(|e| RestartError::Service {
            name: name.to_owned(),
            message: format!("reading s3://{}/{key}: {e}", layout.bucket),
        })?;
        if let Some(meta) = got.and_then(|b| EventMeta::from_json(&b).ok()) {
            return Ok(meta);
        }
    }
    Err(RestartError::NoEvent {
        name: name.to_owned(),
        event_id,
        bucket: layout.bucket.clone(),
        keys: keys.join(", "),
    })
}

/// Starts loop `name`'s successor for the same stored image, if `name` is Stopped or
/// Failed. `source_ref` (from its not-reviewed record) helps find older events.
pub async fn restart_one(
    config: &Config,
    store: &S3Store,
    a2i: &A2iClient,
    name: &str,
    source_ref: Option<&str>,
) -> Result<Restarted, RestartError> {
    let layout = KeyLayout::new(&config.s3);
    let (event_id, attempt) =
        parse_loop_name(name).ok_or_else(|| RestartError::NotOurs(name.to_owned()))?;
    let service = |message: String| RestartError::Service {
        name: name.to_owned(),
        message,
    };
    let (summary, _) = a2i
        .describe(name)
        .await
        .map_err(|e| service(e.to_string()))?;
    if !matches!(summary.state, LoopState::Ended { .. }) {
        return Err(RestartError::NotEnded {
            name: name.to_owned(),
            state: format!("{:?}", summary.state),
        });
    }
    let meta = stored_event(store, &layout, name, event_id, source_ref).await?;
    let image_uri = layout.uri(&layout.image_key(&meta));
    let input = InputContent::for_event(&meta, image_uri, config.review_labels()).to_json_string();
    let next = loop_name(&event_id, attempt.saturating_add(1));
    let from = name.to_owned();
    match a2i.start_loop(&next, &input).await {
        Ok(LoopStart::Started) => Ok(Restarted::Started { from, to: next }),
        Ok(LoopStart::Existed) => Ok(Restarted::Existed { from, to: next }),
        Err(e) => Err(service(format!("starting {next}: {e}"))),
    }
}

/// Restarts every loop of [`not_reviewed`]: the Stopped and Failed loops whose events
/// have no manifest row. Each loop's outcome, in order.
pub async fn restart_all(
    config: &Config,
    store: &S3Store,
    a2i: &A2iClient,
) -> anyhow::Result<Vec<(String, Result<Restarted, RestartError>)>> {
    let mut out = Vec::new();
    for r in not_reviewed(config, store).await? {
        let result = restart_one(
            config,
            store,
            a2i,
            &r.human_loop_name,
            r.source_ref.as_deref(),
        )
        .await;
        out.push((r.human_loop_name, result));
    }
    Ok(out)
}
