//! The image list query: property filters, sort and page size, encoded the way glanceclient
//! sends nova's `get_all(filters={'property-image_type': ...}, sort_key=..., sort_dir=...)`.
//!
//! Must not know: HTTP or pagination mechanics (the client follows `next` links).

use url::form_urlencoded;

/// glanceclient's `DEFAULT_PAGE_SIZE`.
pub const DEFAULT_PAGE_SIZE: u32 = 200;

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    /// Oldest first.
    Asc,
    /// Newest first (nova's rotation order).
    Desc,
}

/// `GET /v2/images` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageQuery {
    filters: Vec<(String, String)>,
    sort_key: Option<String>,
    sort_dir: Option<SortDir>,
    page_size: u32,
}

impl Default for ImageQuery {
    fn default() -> Self {
        Self { filters: Vec::new(), sort_key: None, sort_dir: None, page_size: DEFAULT_PAGE_SIZE }
    }
}

impl ImageQuery {
    /// A query without filters, Glance's default order, 200 per page.
    pub fn new() -> Self {
        Self::default()
    }

    /// nova's backup rotation query: the backups of one instance and type, newest first.
    pub fn backups(instance_uuid: &str, backup_type: &str) -> Self {
        Self::new()
            .filter("image_type", "backup")
            .filter("backup_type", backup_type)
            .filter("instance_uuid", instance_uuid)
            .sort("created_at", SortDir::Desc)
    }

    /// An equality filter on an attribute or custom property (`image_type=backup`; nova's
    /// `property-` prefix is already removed).
    pub fn filter(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.filters.push((key.into(), value.into()));
        self
    }

    /// `sort_key` and `sort_dir`.
    pub fn sort(mut self, key: impl Into<String>, dir: SortDir) -> Self {
        self.sort_key = Some(key.into());
        self.sort_dir = Some(dir);
        self
    }

    /// `limit`: images per page (Glance caps it with `api_limit_max`).
    pub fn page_size(mut self, limit: u32) -> Self {
        self.page_size = limit.max(1);
        self
    }

    /// The path and query string of the first page.
    pub(crate) fn first_page_path(&self) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.filters {
            query.append_pair(key, value);
        }
        query.append_pair("limit", &self.page_size.to_string());
        if let Some(key) = &self.sort_key {
            query.append_pair("sort_key", key);
        }
        if let Some(dir) = self.sort_dir {
            query.append_pair("sort_dir", if dir == SortDir::Asc { "asc" } else { "desc" });
        }
        format!("v2/images?{}", query.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_rotation_query_matches_nova() {
        assert_eq!(
            ImageQuery::backups("u-1", "daily").first_page_path(),
            "v2/images?image_type=backup&backup_type=daily&instance_uuid=u-1&limit=200&sort_key=created_at&sort_dir=desc"
        );
        assert_eq!(
            ImageQuery::new().filter("a b", "c&d").page_size(0).first_page_path(),
            "v2/images?a+b=c%26d&limit=1"
        );
    }
}
