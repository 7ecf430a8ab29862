//! The S3 key layout, in one place (pure; documented in cloud-relay/README.md):
//!
//! | object | key |
//! |---|---|
//! | image | `{images}/{device}/{YYYY}/{MM}/{DD}/{event_id}.{jpg,png}` |
//! | event metadata | `{images}/{device}/{YYYY}/{MM}/{DD}/{event_id}.json` |
//! | manifest row | `{manifest}/rows/{event_id}.json` (one JSON line) |
//! | event index | `{manifest}/events/{event_id}.json` (the meta of the first event stored under the id) |
//! | not-reviewed record | `{manifest}/not-reviewed/{human_loop_name}.json` (one JSON line) |
//! | staged chunk | `{staging}/{event_id}/{image_sha256}/{index:06}` (per set: two sets of one id with other images never meet) |
//! | sweep checkpoint | `{manifest}/sweep/checkpoint.json` (where the reconciliation sweep resumes) |
//! | sweep claim | `{manifest}/sweep/claims/{checkpoint time}-{attempt}.json` (which relay sweeps from that checkpoint) |
//!
//! The date is the capture date (UTC) from the event's `captured_at`, so every relay
//! derives the same key from the same event: redelivery overwrites nothing new.
//! Manifest rows are keyed by event id (= human loop), so "is this loop's row
//! written?" is one HEAD. The event index is keyed by the id alone (not by device or
//! date), so it is the one place that says which content owns an id: the first event
//! stored under an id wins, whatever key its image would have.

use protocol::{EventId, EventMeta};

use crate::config::S3Config;

#[derive(Debug, Clone)]
pub struct KeyLayout {
    pub bucket: String,
    images: String,
    manifest: String,
    staging: String,
}

impl KeyLayout {
    pub fn new(s3: &S3Config) -> Self {
        KeyLayout {
            bucket: s3.bucket.clone(),
            images: s3.images_prefix.clone(),
            manifest: s3.manifest_prefix.clone(),
            staging: s3.staging_prefix.clone(),
        }
    }

    fn event_base(&self, meta: &EventMeta) -> String {
        // captured_at was validated as RFC 3339: it starts with YYYY-MM-DD.
        let date = meta.captured_at.get(..10).unwrap_or("0000-00-00");
        let (y, rest) = date.split_at(4);
        let (m, d) = (&rest[1..3], &rest[4..6]);
        format!(
            "{}/{}/{y}/{m}/{d}/{}",
            self.images, meta.device_id, meta.event_id
        )
    }

    pub fn image_key(&self, meta: &EventMeta) -> String {
        format!(
            "{}.{}",
            self.event_base(meta),
            meta.image.content_type.extension()
        )
    }

    pub fn meta_key(&self, meta: &EventMeta) -> String {
        format!("{}.json", self.event_base(meta))
    }

    pub fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    pub fn rows_prefix(&self) -> String {
        format!("{}/rows/", self.manifest)
    }

    pub fn row_key(&self, event_id: &EventId) -> String {
        format!("{}{event_id}.json", self.rows_prefix())
    }

    /// Where the reconciliation sweep resumes (see [`super::sweep`]).
    pub fn sweep_checkpoint_key(&self) -> String {
        format!("{}/sweep/checkpoint.json", self.manifest)
    }

    /// A claim on one sweep (put only if absent: one winner), named by the
    /// checkpoint it starts from (see [`super::sweep::Step`]).
    pub fn sweep_claim_key(&self, claim: &str) -> String {
        format!("{}/sweep/claims/{claim}.json", self.manifest)
    }

    /// The event index entry: the meta of the event that owns `event_id`.
    pub fn event_index_key(&self, event_id: &EventId) -> String {
        format!("{}/events/{event_id}.json", self.manifest)
    }

    pub fn not_reviewed_prefix(&self) -> String {
        format!("{}/not-reviewed/", self.manifest)
    }

    /// The record of a human loop that ended (Stopped, Failed) without answers.
    pub fn not_reviewed_key(&self, human_loop_name: &str) -> String {
        format!("{}{human_loop_name}.json", self.not_reviewed_prefix())
    }

    /// Where one chunk set stages its chunks: keyed by the image's sha256 as well as
    /// the event id, so a set with other content under the same id (a `conflict`
    /// to be) neither mixes its chunks into this one nor has its cleanup delete this
    /// one's chunks. `image_sha256` is a decoded chunk header's (64 hex, validated).
    pub fn staging_set_prefix(&self, event_id: &EventId, image_sha256: &str) -> String {
        format!("{}/{event_id}/{image_sha256}/", self.staging)
    }

    pub fn staging_chunk_key(&self, event_id: &EventId, image_sha256: &str, index: u32) -> String {
        format!(
            "{}{index:06}",
            self.staging_set_prefix(event_id, image_sha256)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn layout() -> KeyLayout {
        let s3: S3Config = toml::from_str("bucket = \"frames\"").unwrap();
        KeyLayout::new(&s3)
    }

    #[test]
    fn images_and_metadata_sit_side_by_side_under_device_and_capture_date() {
        let meta = super::super::testing::meta(7, 1000);
        let l = layout();
        let id = meta.event_id;
        assert_eq!(
            l.image_key(&meta),
            format!("events/pi-7/2026/11/25/{id}.jpg")
        );
        assert_eq!(
            l.meta_key(&meta),
            format!("events/pi-7/2026/11/25/{id}.json")
        );
        assert_eq!(
            l.uri(&l.image_key(&meta)),
            format!("s3://frames/events/pi-7/2026/11/25/{id}.jpg")
        );
        assert_eq!(l.row_key(&id), format!("manifest/rows/{id}.json"));
        assert_eq!(l.event_index_key(&id), format!("manifest/events/{id}.json"));
        assert_eq!(
            l.not_reviewed_key(&format!("ea2i-{id}-r1")),
            format!("manifest/not-reviewed/ea2i-{id}-r1.json")
        );
        let sha = "ab".repeat(32);
        assert_eq!(
            l.staging_chunk_key(&id, &sha, 3),
            format!("staging/{id}/{sha}/000003")
        );
    }

    /// Two chunk sets under one event id with other images (the second a `conflict`
    /// to be) on relays of a shared subscription: when they shared keys, the second
    /// set's chunks mixed into the first (an inconsistent set, no receipt) and the
    /// cleanup after one deleted the other's freshly staged chunks (an incomplete set
    /// that only a resend could finish).
    #[test]
    fn two_sets_under_one_event_id_with_other_images_never_share_a_staged_key() {
        let l = layout();
        let id = super::super::testing::meta(7, 10).event_id;
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        for i in 0..4 {
            for j in 0..4 {
                assert_ne!(
                    l.staging_chunk_key(&id, &a, i),
                    l.staging_chunk_key(&id, &b, j)
                );
            }
        }
        assert!(!l
            .staging_set_prefix(&id, &a)
            .starts_with(&l.staging_set_prefix(&id, &b)));
        assert!(l
            .staging_set_prefix(&id, &a)
            .starts_with(&format!("staging/{id}/")));
    }

    #[test]
    fn s3_uris_split_into_bucket_and_key() {}
}
