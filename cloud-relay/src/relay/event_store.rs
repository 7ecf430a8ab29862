//! Storing one event's image and metadata, where the first event stored under an id
//! wins. An id is the key of everything downstream (one image, one human loop, one
//! manifest row), so a second event with the same id and other content must not be
//! told `stored`: it gets a `conflict` rejection naming both sha256s, and the agent
//! keeps it aside. A true resend (same content) is stored again, idempotently.
//!
//! Who owns an id is decided by the event index (`{manifest}/events/{id}.json`, see
//! [`super::keys`]): a put-if-absent of the event's meta, keyed by the id alone, so
//! it also catches a second event whose image would land under another key (another
//! device, capture date or image type), and two relays racing on the same id. Events
//! stored before the index existed have no entry; for them the image object itself is
//! checked: its bytes hashed.

use protocol::{CompleteEvent, EventMeta};

use super::event_handler::{EventHandler, HandleError};
use super::keys::KeyLayout;
use super::metrics::inc;
use super::s3::Put;

/// What storing an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// The image and metadata are in S3 (now or from an earlier delivery).
    Stored { image_uri: String },
    /// Another event owns the id; the reason names the id and both sha256s.
    Conflict(String),
}

/// Why `incoming` may not be stored under the id `first` owns, if it may not: other
/// image bytes, or the same bytes under another image key (device, date or type).
pub fn conflict(first: &EventMeta, incoming: &EventMeta, layout: &KeyLayout) -> Option<String> {
    let id = incoming.event_id;
    let (a, b) = (&first.image.sha256, &incoming.image.sha256);
    let first_uri = layout.uri(&layout.image_key(first));
    if a != b {
        return Some(format!(
            "event id {id} is already stored with image sha256 {a} ({first_uri}); \
             this event's image has sha256 {b}: the first stored wins"
        ));
    }
    let uri = layout.uri(&layout.image_key(incoming));
    (uri != first_uri).then(|| {
        format!(
            "event id {id} is already stored as {first_uri} (image sha256 {a}); this event \
             (image sha256 {b}) names another device, capture date or image type ({uri}): \
             the first stored wins"
        )
    })
}

/// Claims the id, then puts the image and its metadata (each only if absent).
pub async fn store_event(p: &EventHandler, event: &CompleteEvent) -> Result<Stored, HandleError> {
    let meta = &event.meta;
    let index_key = p.layout.event_index_key(&meta.event_id);
    let index_uri = || p.layout.uri(&index_key);
    let claim = p
        .retry_store("s3_put_event_index", || {
            p.store
                .put(&index_key, meta.to_json(), "application/json", true)
        })
        .await
        .map_err(|source| HandleError::store("claiming", index_uri(), source))?;
    if claim == Put::Existed {
        let bytes = p
            .retry_store("s3_get_event_index", || p.store.get(&index_key))
            .await
            .map_err(|source| HandleError::store("reading", index_uri(), source))?
            // Removed just now by a relay undoing a wrong claim (below): try again later.
            .ok_or_else(|| HandleError::Vanished { uri: index_uri() })?;
        let first =
            EventMeta::from_json(&bytes).map_err(|source| HandleError::UnreadableIndex {
                uri: index_uri(),
                source,
            })?;
        if let Some(reason) = conflict(&first, meta, &p.layout) {
            return Ok(Stored::Conflict(reason));
        }
    }

    let image_key = p.layout.image_key(meta);
    let image_uri = p.layout.uri(&image_key);
    let meta_key = p.layout.meta_key(meta);
    let content_type = meta.image.content_type.as_str();
    // Image and metadata at once: both must be there before the loop starts.
    let (put, meta_put) = tokio::join!(
        p.retry_store("s3_put_image", || {
            p.store
                .put(&image_key, event.image.clone(), content_type, true)
        }),
        p.retry_store("s3_put_meta", || {
            p.store
                .put(&meta_key, meta.to_json(), "application/json", true)
        })
    );
    let put = put.map_err(|source| HandleError::store("storing", image_uri.clone(), source))?;
    meta_put.map_err(|source| HandleError::store("storing", p.layout.uri(&meta_key), source))?;
    match put {
        Put::Created => inc(&p.metrics.c.images_uploaded_total),
        Put::Existed => {
            let there = existing_sha256(p, &image_key).await?;
            if there != meta.image.sha256 {
                // Stored by a relay that predates the index: that event came first.
                if claim == Put::Created {
                    undo_claim(p, &index_key, &meta_key).await;
                }
                return Ok(Stored::Conflict(format!(
                    "event id {} is already stored with image sha256 {there} ({image_uri}); \
                     this event's image has sha256 {}: the first stored wins",
                    meta.event_id, meta.image.sha256
                )));
            }
        }
    }
    Ok(Stored::Stored { image_uri })
}

/// The sha256 of the image at `key`, by reading it. (Only an image stored before the
/// event index existed is compared this way; objects carry no sha256 metadata because
/// the local object store keeps no user metadata.)
async fn existing_sha256(p: &EventHandler, key: &str) -> Result<String, HandleError> {
    let uri = p.layout.uri(key);
    let bytes = p
        .retry_store("s3_get_image", || p.store.get(key))
        .await
        .map_err(|source| HandleError::store("reading", uri.clone(), source))?
        .ok_or(HandleError::Vanished { uri })?;
    Ok(protocol::json::sha256_hex(&bytes))
}

/// This relay claimed an id that an older relay had already stored under other content:
/// the index entry is made to say so (the stored event's meta), or removed when that
/// meta cannot be read, so the next event under the id is judged again.
async fn undo_claim(p: &EventHandler, index_key: &str, meta_key: &str) {
    let stored_meta = p.store.get(meta_key).await.ok().flatten();
    let fixed = match stored_meta {
        Some(bytes) if EventMeta::from_json(&bytes).is_ok() => p
            .store
            .put(index_key, bytes, "application/json", false)
            .await
            .map(|_| ()),
        _ => p.store.delete(index_key).await,
    };
    if let Err(e) = fixed {
        tracing::warn!(key = %index_key, error = %e, "could not correct the event index entry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::testing::meta;

    fn layout() -> KeyLayout {
        let s3: crate::config::S3Config = toml::from_str("bucket = \"frames\"").unwrap();
        KeyLayout::new(&s3)
    }

    #[test]
    fn the_same_content_under_the_same_id_is_no_conflict() {
        let first = meta(7, 1000);
        assert_eq!(conflict(&first, &first.clone(), &layout()), None);
    }

    #[test]
    fn other_image_bytes_under_a_stored_id_conflict_and_the_reason_names_both_sha256s() {
        let first = meta(7, 1000);
        let mut second = meta(7, 2000);
        second.event_id = first.event_id;
        assert_ne!(first.image.sha256, second.image.sha256);
        let reason = conflict(&first, &second, &layout()).unwrap();
        assert!(reason.contains(&first.event_id.to_string()), "{reason}");
        assert!(reason.contains(&first.image.sha256), "{reason}");
        assert!(reason.contains(&second.image.sha256), "{reason}");
    }

    #[test]
    fn the_same_bytes_under_another_device_or_date_conflict_too() {
        let first = meta(7, 1000);
        let mut second = first.clone();
        second.captured_at = "2026-12-01T00:00:00.000Z".into();
        let reason = conflict(&first, &second, &layout()).unwrap();
        assert!(reason.contains("2026/11/25") && reason.contains("2026/12/01"));
        let mut third = first.clone();
        third.device_id = protocol::DeviceId::new("pi-8").unwrap();
        assert!(conflict(&first, &third, &layout()).is_some());
    }
}
