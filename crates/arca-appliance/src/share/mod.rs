//! The file share: WebDAV over each configured folder, with previous versions beside it.

mod fs;
pub(crate) mod upload;
pub(crate) mod webdav;

pub use fs::ShareFs;
pub use webdav::Dav;
