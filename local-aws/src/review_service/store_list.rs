//! `ListHumanLoops` over the [`HumanLoopStore`]: filter by flow definition and
//! creation time, sort by creation time (ties broken by name), page with an opaque
//! cursor token; only the page's loops are expanded from their compact form.
//! (API reference: Amazon Augmented AI Runtime, ListHumanLoops.)

use time::OffsetDateTime;

use super::super::loop_record::Kept;
use super::super::page_token::PageCursor;
use super::{HumanLoop, HumanLoopStore, LoopError, SortOrder};

/// Largest page `ListHumanLoops` returns (the API's `MaxResults` maximum).
pub const MAX_PAGE_SIZE: i32 = 100;
/// Page size when the caller gives no `MaxResults`.
pub const DEFAULT_PAGE_SIZE: i32 = 100;

/// One `ListHumanLoops` request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    pub flow_definition_name: String,
    /// Only loops created strictly after this instant.
    pub created_after: Option<OffsetDateTime>,
    /// Only loops created strictly before this instant.
    pub created_before: Option<OffsetDateTime>,
    pub sort_order: SortOrder,
    pub next_token: Option<String>,
    pub max_results: Option<i32>,
}

#[derive(Debug, PartialEq)]
pub struct ListPage {
    pub loops: Vec<HumanLoop>,
    pub next_token: Option<String>,
}

impl HumanLoopStore {
    /// `ListHumanLoops`: filter by flow definition and creation time, sort by creation
    /// time (ties broken by name), and page with an opaque cursor token that names the
    /// last loop returned, so pages stay consistent while loops come and go.
    pub fn list(&self, q: &ListQuery) -> Result<ListPage, LoopError> {
        let page_size = q.max_results.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(LoopError::Invalid(format!(
                "MaxResults must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"
            )));
        }
        let cursor = q
            .next_token
            .as_deref()
            .map(|t| {
                PageCursor::decode(t, q.sort_order).map_err(|_| {
                    LoopError::Invalid(format!("NextToken {t:?} is not valid for this request"))
                })
            })
            .transpose()?;
        let mut matching: Vec<(&str, &Kept)> = self
            .loops
            .iter()
            .map(|(n, k)| (&**n, k))
            .filter(|(_, k)| {
                self.origins.get(k.origin).flow_definition_name == q.flow_definition_name
            })
            .filter(|(_, k)| !matches!(q.created_after, Some(t) if k.creation_time <= t))
            .filter(|(_, k)| !matches!(q.created_before, Some(t) if k.creation_time >= t))
            .collect();
        matching.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        if q.sort_order == SortOrder::Descending {
            matching.reverse();
        }
        let after_cursor = |l: &(&str, &Kept)| match &cursor {
            None => true,
            Some(c) => {
                let key = sort_key(l);
                let ck = (c.creation_nanos, c.name.as_str());
                match q.sort_order {
                    SortOrder::Ascending => key > ck,
                    SortOrder::Descending => key < ck,
                }
            }
        };
        let mut rest = matching.into_iter().filter(after_cursor);
        let page: Vec<(&str, &Kept)> = rest.by_ref().take(page_size as usize).collect();
        let next_token = match (rest.next(), page.last()) {
            (Some(_), Some((name, last))) => Some(
                PageCursor {
                    creation_nanos: last.creation_time.unix_timestamp_nanos(),
                    name: (*name).to_owned(),
                }
                .encode(q.sort_order),
            ),
            _ => None,
        };
        let loops = page.into_iter().map(|(n, k)| self.expand(n, k)).collect();
        Ok(ListPage { loops, next_token })
    }
}

fn sort_key<'a>((name, k): &(&'a str, &Kept)) -> (i128, &'a str) {
    (k.creation_time.unix_timestamp_nanos(), name)
}
