//! The file share: WebDAV over each configured folder, with previous versions beside it.

mod fs;
mod upload;
mod webdav;

pub use fs::ShareFs;
pub use webdav::Dav;
