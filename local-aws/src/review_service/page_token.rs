//! `NextToken` for ListHumanLoops: a cursor naming the last loop of the previous page
//! (creation time and name, the sort key), so that pages stay consistent while loops
//! are started and deleted between calls.

/// ListHumanLoops' `SortOrder`, by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortOrder {
    Ascending,
    /// The default, as for the other SageMaker `List*` calls: newest first.
    #[default]
    Descending,
}

/// A token this service did not issue for a request in this sort order.
#[derive(Debug, PartialEq, Eq)]
pub struct BadToken;

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
        hex::encode(format!("v1:{o}:{}:{}", self.creation_nanos, self.name))
    }

    pub fn decode(token: &str, order: SortOrder) -> Result<Self, BadToken> {
        // 8192 characters is the API's limit.
        if token.len() > 8192 {
            return Err(BadToken);
        }
        let bytes = hex::decode(token).map_err(|_| BadToken)?;
        let plain = String::from_utf8(bytes).map_err(|_| BadToken)?;
        let mut parts = plain.splitn(4, ':');
        let (Some("v1"), Some(o), Some(nanos), Some(name)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BadToken);
        };
        let expected = match order {
            SortOrder::Ascending => "A",
            SortOrder::Descending => "D",
        };
        if o != expected {
            return Err(BadToken);
        }
        Ok(Self {
            creation_nanos: nanos.parse().map_err(|_| BadToken)?,
            name: name.to_owned(),
        })
    }
}
