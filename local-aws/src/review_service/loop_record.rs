//! How [`HumanLoopStore`](super::store::HumanLoopStore) keeps a loop in memory: only
//! what cannot be derived, about 100 bytes a loop instead of a [`HumanLoop`]'s ~700.
//!
//! A loop's ARN, its flow definition's ARN and name, and its output.json URI are
//! long strings, but all follow from the loop's name, its creation time and its
//! flow: the loop ARN is `<flow's loop ARN prefix><name>`, the URI is
//! [`output_uri`]`(<flow's output path>, <flow name>, <creation time>, <name>)`. The
//! store interns each distinct flow once (an [`Origin`]) and keeps per loop its
//! origin's index, status, creation time and the rare rest. A loop whose strings do
//! not follow the pattern (state written by other code) keeps them explicitly, so
//! nothing is ever lost by the compaction; [`expand`] gives back the same
//! [`HumanLoop`]. The store's JSON form is unchanged by this: it is written by
//! expanding one loop at a time.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::store::{output_uri, HumanLoop, HumanLoopStatus, HumanLoopStore};

/// What loops of one flow definition share (one per flow and output path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    pub flow_definition_arn: String,
    pub flow_definition_name: String,
    /// `OutputConfig.S3OutputPath` when the loops were started.
    pub output_path: String,
    /// `arn:aws:sagemaker:<region>:<account>:human-loop/`.
    pub loop_arn_prefix: String,
}

/// One loop in memory, without its name (the store's key).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Kept {
    pub origin: u32,
    pub status: HumanLoopStatus,
    pub creation_time: OffsetDateTime,
    /// What most loops do not have; `None` costs one word.
    pub rest: Option<Box<Rest>>,
}

/// The fields that are usually empty, and any string that did not follow the pattern.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Rest {
    pub content_classifiers: Vec<String>,
    pub failure_reason: Option<String>,
    pub failure_code: Option<String>,
    pub arn: Option<String>,
    pub output_s3_uri: Option<String>,
}

/// The interned origins.
#[derive(Debug, Clone, Default)]
pub(super) struct Origins(Vec<Origin>);

impl Origins {
    fn intern(&mut self, origin: Origin) -> u32 {
        if let Some(i) = self.0.iter().position(|o| *o == origin) {
            return i as u32;
        }
        self.0.push(origin);
        (self.0.len() - 1) as u32
    }

    pub fn get(&self, i: u32) -> &Origin {
        &self.0[i as usize]
    }
}

/// The output path `uri` was made from, if it follows [`output_uri`]'s pattern.
fn output_path_of(l: &HumanLoop) -> Option<String> {
    let suffix = output_uri("", &l.flow_definition_name, l.creation_time, &l.name);
    l.output_s3_uri
        .strip_suffix(suffix.as_str())
        .map(str::to_owned)
}

/// Splits `l` into its interned origin and what only it holds.
pub(super) fn compact(origins: &mut Origins, l: &HumanLoop) -> Kept {
    let mut rest = Rest {
        content_classifiers: l.content_classifiers.clone(),
        failure_reason: l.failure_reason.clone(),
        failure_code: l.failure_code.clone(),
        ..Rest::default()
    };
    let loop_arn_prefix = match l.arn.strip_suffix(l.name.as_str()) {
        Some(p) => p.to_owned(),
        None => {
            rest.arn = Some(l.arn.clone());
            String::new()
        }
    };
    let output_path = output_path_of(l).unwrap_or_else(|| {
        rest.output_s3_uri = Some(l.output_s3_uri.clone());
        String::new()
    });
    let origin = origins.intern(Origin {
        flow_definition_arn: l.flow_definition_arn.clone(),
        flow_definition_name: l.flow_definition_name.clone(),
        output_path,
        loop_arn_prefix,
    });
    Kept {
        origin,
        status: l.status,
        creation_time: l.creation_time,
        rest: (rest != Rest::default()).then(|| Box::new(rest)),
    }
}

/// The loop `name` as it was started (and changed since).
pub(super) fn expand(origins: &Origins, name: &str, k: &Kept) -> HumanLoop {
    let o = origins.get(k.origin);
    let rest = k.rest.as_deref();
    HumanLoop {
        name: name.to_owned(),
        arn: rest
            .and_then(|r| r.arn.clone())
            .unwrap_or_else(|| format!("{}{name}", o.loop_arn_prefix)),
        flow_definition_arn: o.flow_definition_arn.clone(),
        flow_definition_name: o.flow_definition_name.clone(),
        status: k.status,
        creation_time: k.creation_time,
        content_classifiers: rest
            .map(|r| r.content_classifiers.clone())
            .unwrap_or_default(),
        output_s3_uri: rest
            .and_then(|r| r.output_s3_uri.clone())
            .unwrap_or_else(|| {
                output_uri(
                    &o.output_path,
                    &o.flow_definition_name,
                    k.creation_time,
                    name,
                )
            }),
        failure_reason: rest.and_then(|r| r.failure_reason.clone()),
        failure_code: rest.and_then(|r| r.failure_code.clone()),
        legacy_input: None,
    }
}

impl PartialEq for HumanLoopStore {
    /// Same loops and quota, however the origins were interned.
    fn eq(&self, other: &Self) -> bool {
        self.max_in_progress() == other.max_in_progress()
            && self.len() == other.len()
            && self.iter().eq(other.iter())
    }
}

impl Serialize for HumanLoopStore {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeStruct};
        struct Loops<'a>(&'a HumanLoopStore);
        impl Serialize for Loops<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(Some(self.0.len()))?;
                for l in self.0.iter() {
                    m.serialize_entry(&l.name, &l)?;
                }
                m.end()
            }
        }
        let mut st = ser.serialize_struct("HumanLoopStore", 2)?;
        st.serialize_field("loops", &Loops(self))?;
        st.serialize_field("max_in_progress", &self.max_in_progress())?;
        st.end()
    }
}

impl<'de> Deserialize<'de> for HumanLoopStore {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            loops: BTreeMap<String, HumanLoop>,
            max_in_progress: usize,
        }
        let wire = Wire::deserialize(de)?;
        let mut store = HumanLoopStore::new(wire.max_in_progress);
        for l in wire.loops.into_values() {
            store.insert(l);
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> HumanLoop {
        let created = datetime!(2024-05-01 12:00:00.123 UTC);
        HumanLoop {
            name: "loop-1".into(),
            arn: "arn:aws:sagemaker:us-east-1:000000000000:human-loop/loop-1".into(),
            flow_definition_arn: "arn:aws:sagemaker:us-east-1:000000000000:flow-definition/f"
                .into(),
            flow_definition_name: "f".into(),
            status: HumanLoopStatus::InProgress,
            creation_time: created,
            content_classifiers: vec![],
            output_s3_uri: output_uri("s3://bucket/a2i/", "f", created, "loop-1"),
            failure_reason: None,
            failure_code: None,
            legacy_input: None,
        }
    }

    #[test]
    fn a_loop_following_the_pattern_keeps_no_strings_of_its_own() {
        let mut origins = Origins::default();
        let l = sample();
        let k = compact(&mut origins, &l);
        assert!(k.rest.is_none());
        assert_eq!(expand(&origins, &l.name, &k), l);
        // A second loop of the flow shares the origin.
        let mut m = sample();
        m.name = "loop-2".into();
        m.arn = m.arn.replace("loop-1", "loop-2");
        m.output_s3_uri = m.output_s3_uri.replace("loop-1", "loop-2");
        assert_eq!(compact(&mut origins, &m).origin, k.origin);
        assert_eq!(origins.0.len(), 1);
    }

    #[test]
    fn strings_off_the_pattern_and_rare_fields_are_kept_as_they_were() {
        let mut origins = Origins::default();
        let mut l = sample();
        l.arn = "arn:other".into();
        l.output_s3_uri = "s3://elsewhere/output.json".into();
        l.content_classifiers = vec!["FreeOfAdultContent".into()];
        l.failure_reason = Some("why".into());
        let k = compact(&mut origins, &l);
        assert_eq!(expand(&origins, &l.name, &k), l);
    }
}
