//! The S3 key layout, in one place (pure; documented in cloud-relay/README.md):
//!
//! | object | key |
//! |---|---|
//! | image | `{images}/{device}/{YYYY}/{MM}/{DD}/{event_id}.{jpg,png}` |
//! | event metadata | `{images}/{device}/{YYYY}/{MM}/{DD}/{event_id}.json` |
//! | manifest row | `{manifest}/rows/{event_id}.json` (one JSON line) |
//! | event index | `{manifest}/events/{event_id}.json` (the meta of the first event stored under the id) |
//! | not-reviewed record | `{manifest}/not-reviewed/{human_loop_name}.json` (one JSON line) |
//! | staged chunk | `{staging}/{event_id}/{meta_sha256}/{index:06}` (per set: two sets under one id with other content never meet) |
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

use super::intake::EventKey;

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

    /// Where one chunk set stages its chunks: under the event id and the digest of
    /// the set's meta ([`EventKey`], 64 hex), so a set with other content under the
    /// same id (a `conflict` to be) neither mixes its chunks into this one nor has
    /// its cleanup delete this one's chunks. (A resend of the same set does share its
    /// keys: a cleanup running late can delete its chunks, and the agent's next
    /// resend completes it.)
    pub fn staging_set_prefix(&self, set: &EventKey) -> String {
        format!("{}/{}/{}/", self.staging, set.event_id, set.meta_sha256)
    }

    pub fn staging_chunk_key(&self, set: &EventKey, index: u32) -> String {
        format!("{}{index:06}", self.staging_set_prefix(set))
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
        let set = EventKey::of(&meta);
        assert_eq!(
            l.staging_chunk_key(&set, 3),
            format!("staging/{id}/{}/000003", set.meta_sha256)
        );
    }

    /// Two chunk sets under one event id with other content (the second a `conflict`
    /// to be: another image, or the same image under another capture date) on relays
    /// of a shared subscription: when they shared keys, the second set's chunks mixed
    /// into the first (an inconsistent set, no receipt) and the cleanup after one
    /// deleted the other's freshly staged chunks (an incomplete set that only a
    /// resend could finish).
    #[test]
    fn two_sets_under_one_event_id_with_other_content_never_share_a_staged_key() {
        let l = layout();
        let first = super::super::testing::meta(7, 10);
        let mut other_image = first.clone();
        other_image.image.sha256 = "cd".repeat(32);
        let mut other_date = first.clone();
        other_date.captured_at = "2026-12-24T09:00:00.000Z".into();
        let sets = [&first, &other_image, &other_date].map(EventKey::of);
        for (x, a) in sets.iter().enumerate() {
            for b in &sets[x + 1..] {
                for (i, j) in [(0, 0), (0, 1), (3, 3)] {
                    assert_ne!(l.staging_chunk_key(a, i), l.staging_chunk_key(b, j));
                }
                assert!(!l
                    .staging_set_prefix(a)
                    .starts_with(&l.staging_set_prefix(b)));
            }
            let id = first.event_id;
            assert!(l
                .staging_set_prefix(a)
                .starts_with(&format!("staging/{id}/")));
        }
        assert_eq!(
            EventKey::of(&first),
            EventKey::of(&first.clone()),
            "a resend"
        );
    }

    #[test]
    fn s3_uris_split_into_bucket_and_key() {}
}
