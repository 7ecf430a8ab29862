//! One row of a SageMaker Ground Truth augmented manifest for image classification
//! (JSON lines), which the relay appends for every reviewed event and fine-tuning
//! reads. The label attribute name is configurable (default `label`); the row carries
//! the class index under it and the details under `<attr>-metadata`:
//!
//! ```json
//! {"source-ref":"s3://bucket/events/pi-kitchen/01936f0e-7c4a-7b1e-9f3a-2d4c5b6a7e8f.jpg",
//!  "label":4,
//!  "label-metadata":{"class-name":"beagle","confidence":1.0,
//!    "type":"groundtruth/image-classification","human-annotated":"yes",
//!    "creation-date":"2026-11-25T09:00:00.000000","job-name":"labeling-job/edge-a2i-dogs"}}
//! ```
//!
//! (on one line). `confidence` is the reviewers' agreement; `creation-date` is ISO
//! 8601 without a zone, UTC implied, as Ground Truth writes it
//! ([`crate::timestamp::format_manifest_date`]). Parsing names the key at fault, so a
//! bad line in a manifest says why it cannot be used.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::json::is_s3_uri;
use crate::timestamp::parse_iso8601_utc;

pub const DEFAULT_ATTRIBUTE: &str = "label";
pub const CLASSIFICATION_TYPE: &str = "groundtruth/image-classification";
const SOURCE_REF: &str = "source-ref";

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("manifest row is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("manifest row is not a JSON object")]
    NotObject,
    #[error("label attribute name {attribute:?} is invalid: {problem}")]
    InvalidAttribute {
        attribute: String,
        problem: &'static str,
    },
    #[error("manifest row has no `{key}`")]
    Missing { key: String },
    #[error("manifest row field `{key}` {problem}")]
    Invalid { key: String, problem: String },
}

/// The details Ground Truth keeps next to the class index.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationMetadata {
    pub class_name: String,
    /// 0..=1; for a human review, the reviewers' agreement.
    pub confidence: f64,
    /// Written as "yes"/"no".
    pub human_annotated: bool,
    /// ISO 8601 without zone: `2026-11-25T09:00:00.000000`.
    pub creation_date: String,
    pub job_name: String,
    /// The reviewers' answers tied and the label submitted first won (see
    /// [`crate::a2i`]); written as `"tie":true` only when set, read as false when
    /// absent (Ground Truth itself never writes it).
    pub tie: bool,
}

/// One augmented-manifest line.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// s3:// URI of the image.
    pub source_ref: String,
    /// The label attribute name: the key of the class index.
    pub attribute: String,
    pub class_index: u32,
    pub metadata: ClassificationMetadata,
}

/// Ground Truth's rule for label attribute names: 1-127 characters of letters,
/// digits and hyphens, starting and ending with a letter or digit, not ending in
/// `-metadata` (the attribute's own metadata key is `<attr>-metadata`) and not ending
/// in `-ref` (augmented-manifest keys ending in `-ref`, like `source-ref`, hold S3
/// references to objects, not labels).
pub fn validate_attribute(attribute: &str) -> Result<(), ManifestError> {
    let problem = if attribute.is_empty() || attribute.len() > 127 {
        Some("it must be 1-127 characters long")
    } else if !attribute
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        Some("only letters, digits and hyphens are allowed")
    } else if attribute.starts_with('-') || attribute.ends_with('-') {
        Some("it must start and end with a letter or digit")
    } else if attribute.ends_with("-metadata") {
        Some("it must not end in -metadata (Ground Truth keeps the label's metadata under <attribute>-metadata)")
    } else if attribute.ends_with("-ref") || attribute == SOURCE_REF {
        Some("it must not end in -ref (Ground Truth reads such keys, like source-ref, as S3 references)")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ManifestError::InvalidAttribute {
            attribute: attribute.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

impl ManifestRow {
    /// The row as a JSON object with the dynamic keys `<attr>` and `<attr>-metadata`.
    pub fn to_json_value(&self) -> Value {
        let m = &self.metadata;
        let mut meta = Map::new();
        meta.insert("class-name".into(), m.class_name.clone().into());
        meta.insert("confidence".into(), m.confidence.into());
        meta.insert("type".into(), CLASSIFICATION_TYPE.into());
        meta.insert(
            "human-annotated".into(),
            if m.human_annotated { "yes" } else { "no" }.into(),
        );
        meta.insert("creation-date".into(), m.creation_date.clone().into());
        meta.insert("job-name".into(), m.job_name.clone().into());
        if m.tie {
            meta.insert("tie".into(), true.into());
        }
        let mut row = Map::new();
        row.insert(SOURCE_REF.into(), self.source_ref.clone().into());
        row.insert(self.attribute.clone(), self.class_index.into());
        row.insert(format!("{}-metadata", self.attribute), Value::Object(meta));
        Value::Object(row)
    }

    /// One line of JSON, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        self.to_json_value().to_string()
    }

    /// Parses a line whose label attribute is `attribute`, checking every field this
    /// row type needs; other keys (other attributes, extra metadata) are ignored.
    pub fn parse(line: &str, attribute: &str) -> Result<Self, ManifestError> {
        Self::parse_with(line, attribute, true)
    }

    /// As [`parse`](Self::parse), but a `source-ref` may also be a local path (for
    /// manifests of frames on disk, which `eval` and `retrain` read); it must not be
    /// empty.
    pub fn parse_local_or_s3(line: &str, attribute: &str) -> Result<Self, ManifestError> {
        Self::parse_with(line, attribute, false)
    }

    fn parse_with(line: &str, attribute: &str, s3_only: bool) -> Result<Self, ManifestError> {
        validate_attribute(attribute)?;
        let value: Value = serde_json::from_str(line).map_err(ManifestError::NotJson)?;
        let row = value.as_object().ok_or(ManifestError::NotObject)?;
        let meta_key = format!("{attribute}-metadata");
        let source_ref = string(row, SOURCE_REF, "")?;
        if source_ref.is_empty() {
            return Err(invalid(SOURCE_REF, "is empty".into()));
        }
        if s3_only && !is_s3_uri(source_ref) {
            return Err(invalid(
                SOURCE_REF,
                format!("{source_ref:?} is not an s3://bucket/key URI"),
            ));
        }
        let class_index = get(row, attribute, "")?
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| {
                invalid(
                    attribute,
                    "is not a non-negative integer class index".into(),
                )
            })?;
        let meta = get(row, "metadata", &meta_key)?
            .as_object()
            .ok_or_else(|| invalid(&meta_key, "is not an object".into()))?;
        let key = |k: &str| format!("{meta_key}.{k}");
        let class_name = string(meta, "class-name", &meta_key)?.to_owned();
        let confidence = get(meta, "confidence", &meta_key)?
            .as_f64()
            .filter(|c| (0.0..=1.0).contains(c))
            .ok_or_else(|| invalid(&key("confidence"), "is not a number between 0 and 1".into()))?;
        let kind = string(meta, "type", &meta_key)?;
        if kind != CLASSIFICATION_TYPE {
            return Err(invalid(
                &key("type"),
                format!("is {kind:?}, not {CLASSIFICATION_TYPE:?}"),
            ));
        }
        let human_annotated = match string(meta, "human-annotated", &meta_key)? {
            "yes" => true,
            "no" => false,
            other => {
                return Err(invalid(
                    &key("human-annotated"),
                    format!("is {other:?}, not \"yes\" or \"no\""),
                ))
            }
        };
        let creation_date = string(meta, "creation-date", &meta_key)?.to_owned();
        parse_iso8601_utc(&creation_date)
            .map_err(|e| invalid(&key("creation-date"), e.to_string()))?;
        let job_name = string(meta, "job-name", &meta_key)?.to_owned();
        let tie = match meta.get("tie") {
            None => false,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| invalid(&key("tie"), "is not true or false".into()))?,
        };
        Ok(ManifestRow {
            source_ref: source_ref.to_owned(),
            attribute: attribute.to_owned(),
            class_index,
            metadata: ClassificationMetadata {
                class_name,
                confidence,
                human_annotated,
                creation_date,
                job_name,
                tie,
            },
        })
    }
}

fn invalid(key: &str, problem: String) -> ManifestError {
    ManifestError::Invalid {
        key: key.to_owned(),
        problem,
    }
}

/// `map[k]`; `parent` prefixes the key in errors (or, for "metadata", names it).
fn get<'a>(map: &'a Map<String, Value>, k: &str, parent: &str) -> Result<&'a Value, ManifestError> {
    let (lookup, name) = match (k, parent) {
        ("metadata", p) => (p.to_owned(), p.to_owned()),
        (k, "") => (k.to_owned(), k.to_owned()),
        (k, p) => (k.to_owned(), format!("{p}.{k}")),
    };
    map.get(&lookup).ok_or(ManifestError::Missing { key: name })
}

fn string<'a>(
    map: &'a Map<String, Value>,
    k: &str,
    parent: &str,
) -> Result<&'a str, ManifestError> {
    get(map, k, parent)?.as_str().ok_or_else(|| {
        let name = if parent.is_empty() {
            k.to_owned()
        } else {
            format!("{parent}.{k}")
        };
        invalid(&name, "is not a string".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(attribute: &str) -> ManifestRow {
        ManifestRow {
            source_ref: "s3://bucket/events/pi-kitchen/a.jpg".into(),
            attribute: attribute.into(),
            class_index: 4,
            metadata: ClassificationMetadata {
                class_name: "beagle".into(),
                confidence: 1.0,
                human_annotated: true,
                creation_date: crate::timestamp::format_manifest_date(1_795_597_200_000),
                job_name: "labeling-job/edge-a2i-dogs".into(),
                tie: false,
            },
        }
    }

    #[test]
    fn a_row_has_the_ground_truth_image_classification_shape() {
        let value: Value = serde_json::from_str(&row("label").to_json_line()).unwrap();
        assert_eq!(
            value,
            json!({"source-ref": "s3://bucket/events/pi-kitchen/a.jpg", "label": 4,
                   "label-metadata": {"class-name": "beagle", "confidence": 1.0,
                       "type": "groundtruth/image-classification", "human-annotated": "yes",
                       "creation-date": "2026-11-25T09:00:00.000000",
                       "job-name": "labeling-job/edge-a2i-dogs"}})
        );
        assert!(!row("label").to_json_line().contains('\n'));
    }

    #[test]
    fn the_attribute_name_is_the_dynamic_key_and_rows_parse_back() {
        let r = row("dog-breed");
        let value = r.to_json_value();
        assert_eq!(value["dog-breed"], 4);
        assert_eq!(value["dog-breed-metadata"]["class-name"], "beagle");
        assert_eq!(
            ManifestRow::parse(&r.to_json_line(), "dog-breed").unwrap(),
            r
        );
    }

    #[test]
    fn a_tie_is_a_metadata_field_written_only_when_set_and_read_back() {
        let mut r = row("label");
        r.metadata.tie = true;
        let line = r.to_json_line();
        assert!(line.contains("\"tie\":true"), "{line}");
        assert_eq!(ManifestRow::parse(&line, "label").unwrap(), r);
        let bad = line.replace("\"tie\":true", "\"tie\":\"yes\"");
        let e = ManifestRow::parse(&bad, "label").unwrap_err().to_string();
        assert!(
            e.contains("label-metadata.tie") && e.contains("true or false"),
            "{e}"
        );
    }

    #[test]
    fn rows_written_by_ground_truth_itself_parse_with_their_extra_keys() {
        let line = r#"{"source-ref":"s3://b/k.jpg","label":0,"other":1,"label-metadata":{"class-name":"pug",
            "confidence":0.87,"type":"groundtruth/image-classification","job-name":"labeling-job/x",
            "human-annotated":"no","creation-date":"2018-10-18T22:18:13.527256"}}"#;
        let r = ManifestRow::parse(line, "label").unwrap();
        assert_eq!(
            (
                r.class_index,
                r.metadata.human_annotated,
                r.metadata.confidence
            ),
            (0, false, 0.87)
        );
    }

    #[test]
    fn a_row_that_does_not_parse_says_why() {
        let good = row("label").to_json_value();
        let broken = |edit: &dyn Fn(&mut Value)| {
            let mut v = good.clone();
            edit(&mut v);
            ManifestRow::parse(&v.to_string(), "label")
                .unwrap_err()
                .to_string()
        };
        let remove =
            |k: &'static str| move |v: &mut Value| drop(v.as_object_mut().unwrap().remove(k));
        let remove_meta = |k: &'static str| {
            move |v: &mut Value| drop(v["label-metadata"].as_object_mut().unwrap().remove(k))
        };
        assert_eq!(
            broken(&remove("source-ref")),
            "manifest row has no `source-ref`"
        );
        assert_eq!(broken(&remove("label")), "manifest row has no `label`");
        assert_eq!(
            broken(&remove("label-metadata")),
            "manifest row has no `label-metadata`"
        );
        assert_eq!(
            broken(&remove_meta("job-name")),
            "manifest row has no `label-metadata.job-name`"
        );
        assert_eq!(
            broken(&|v| v["source-ref"] = "/data/a.jpg".into()),
            "manifest row field `source-ref` \"/data/a.jpg\" is not an s3://bucket/key URI"
        );
        assert_eq!(
            broken(&|v| v["label"] = "beagle".into()),
            "manifest row field `label` is not a non-negative integer class index"
        );
        assert!(broken(&|v| v["label"] = json!(-1)).contains("non-negative integer"));
        assert!(broken(&|v| v["label"] = json!(1.5)).contains("non-negative integer"));
        assert_eq!(
            broken(&|v| v["label-metadata"] = json!([])),
            "manifest row field `label-metadata` is not an object"
        );
        assert_eq!(
            broken(&|v| v["label-metadata"]["confidence"] = json!(1.2)),
            "manifest row field `label-metadata.confidence` is not a number between 0 and 1"
        );
        assert!(
            broken(&|v| v["label-metadata"]["type"] = "groundtruth/object-detection".into())
                .contains("not \"groundtruth/image-classification\"")
        );
        assert!(
            broken(&|v| v["label-metadata"]["human-annotated"] = "maybe".into())
                .contains("`label-metadata.human-annotated`")
        );
        assert!(
            broken(&|v| v["label-metadata"]["creation-date"] = "today".into())
                .contains("`label-metadata.creation-date`")
        );
        assert!(broken(&|v| v["label-metadata"]["class-name"] = json!(3))
            .contains("`label-metadata.class-name` is not a string"));
        assert!(ManifestRow::parse("{", "label")
            .unwrap_err()
            .to_string()
            .starts_with("manifest row is not JSON"));
        assert_eq!(
            ManifestRow::parse("[1]", "label").unwrap_err().to_string(),
            "manifest row is not a JSON object"
        );
    }

    #[test]
    fn attribute_names_follow_ground_truth_rules() {
        for ok in ["label", "dog-breed", "a", "A1"] {
            assert!(validate_attribute(ok).is_ok(), "{ok:?} refused");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "a_b",
            "label-metadata",
            "source-ref",
            "breed-ref",
            &"a".repeat(128),
        ] {
            assert!(validate_attribute(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ManifestRow::parse(&row("label").to_json_line(), "bad_attr").is_err());
    }
}
