//! `NextToken` for ListHumanLoops: a cursor naming the last loop of the previous page
//! (creation time and name, the sort key), so that pages stay consistent while loops
//! are started and deleted between calls.

use super::store::{LoopError, SortOrder};

/// The position after which the next page starts. Encoded as hex so that clients
/// treat it as opaque; it carries the sort order so a token is not reused with another.
pub(crate) struct PageCursor {
    pub creation_nanos: i128,
    pub name: String,
}

impl PageCursor {
    pub fn encode(&self, order: SortOrder) -> String {
        let o = match order {
            SortOrder::Ascending => 'A',
            SortOrder::Descending => 'D',
        };
        let plain = format!("v1:{o}:{}:{}", self.creation_nanos, self.name);
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    pub fn decode(token: &str, order: SortOrder) -> Result<Self, LoopError> {
        let bad =
            || LoopError::Invalid(format!("NextToken {token:?} is not valid for this request"));
        // Two hex digits per byte (checked by `get` below); 8192 is the API's limit.
        if token.len() > 8192 {
            return Err(bad());
        }
        let bytes = (0..token.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(token.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())
            })
            .collect::<Result<Vec<u8>, _>>()?;
        let plain = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = plain.splitn(4, ':');
        let (Some("v1"), Some(o), Some(nanos), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let expected = match order {
            SortOrder::Ascending => "A",
            SortOrder::Descending => "D",
        };
        if o != expected {
            return Err(bad());
        }
        Ok(Self {
            creation_nanos: nanos.parse().map_err(|_| bad())?,
            name: name.to_owned(),
        })
    }
}
