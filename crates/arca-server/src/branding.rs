//! White label: the provider's product name, logo, colour, support contact and sign-in text,
//! applied to every page and every alert e-mail. The arca name stays only in the pages' footer.
//!
//! A reseller may set a brand of its own ([`Scope::Reseller`]): its admins and its tenants' users
//! see it on every page after signing in, and on the sign-in page reached by its own address
//! (`/login?reseller=NAME`). Without one they see the provider's.
//!
//! The brand in force is kept in memory ([`current`]) so that rendering a page costs no query;
//! it is read from the database at start, after a change through this process, and every few
//! seconds by the alert loop (so a change made through another server process of a scale-out
//! pair shows within seconds).

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::db::branding::StoredBrand;
use crate::db::Db;

/// The scope of the provider's own brand.
pub const PROVIDER: &str = "provider";

/// Whose brand: the provider's, or one reseller's (by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The provider's, in force wherever no reseller's applies.
    Provider,
    /// A reseller's, for its admins and its tenants' users.
    Reseller(i64),
}

impl Scope {
    /// The key of its row in the database.
    pub fn key(self) -> String {
        match self {
            Scope::Provider => PROVIDER.to_string(),
            Scope::Reseller(id) => format!("reseller:{id}"),
        }
    }

    /// The address its logo is served at (without the version).
    fn logo_path(self) -> String {
        match self {
            Scope::Provider => "/brand/logo".to_string(),
            Scope::Reseller(id) => format!("/brand/logo/{id}"),
        }
    }
}
/// The product name until the provider sets one.
pub const DEFAULT_NAME: &str = "arca";
/// The accent colour until the provider sets one.
pub const DEFAULT_ACCENT: &str = "#1f6feb";
/// The largest logo accepted.
pub const MAX_LOGO_BYTES: usize = 256 * 1024;
/// The longest product name.
pub const MAX_NAME: usize = 40;
/// The longest sign-in text.
pub const MAX_SIGN_IN_TEXT: usize = 500;

/// The brand as pages and e-mails use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Brand {
    /// The product's name.
    pub product_name: String,
    /// `#rrggbb`.
    pub accent: String,
    /// The logo's address (with its version), if there is a logo.
    pub logo_url: Option<String>,
    /// Support address (may be empty).
    pub support_email: String,
    /// Support site (may be empty).
    pub support_url: String,
    /// Text for the sign-in page (may be empty).
    pub sign_in_text: String,
    /// Whether the provider set a brand (the footer says "powered by arca" then).
    pub custom: bool,
}

impl Default for Brand {
    fn default() -> Self {
        Brand {
            product_name: DEFAULT_NAME.into(),
            accent: DEFAULT_ACCENT.into(),
            logo_url: None,
            support_email: String::new(),
            support_url: String::new(),
            sign_in_text: String::new(),
            custom: false,
        }
    }
}

impl Brand {
    fn from_stored(s: &StoredBrand, scope: Scope) -> Brand {
        Brand {
            product_name: s.product_name.clone(),
            accent: s.accent.clone(),
            logo_url: (!s.logo_type.is_empty()).then(|| format!("{}?v={}", scope.logo_path(), s.updated_at)),
            support_email: s.support_email.clone(),
            support_url: s.support_url.clone(),
            sign_in_text: s.sign_in_text.clone(),
            custom: true,
        }
    }

    /// One line naming how to reach support, for e-mails and messages ("" when none is set).
    pub fn support_line(&self) -> String {
        match (self.support_email.is_empty(), self.support_url.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!("Support: {}", self.support_email),
            (true, false) => format!("Support: {}", self.support_url),
            (false, false) => format!("Support: {} · {}", self.support_email, self.support_url),
        }
    }
}

fn cell() -> &'static RwLock<Arc<Brand>> {
    static CURRENT: std::sync::OnceLock<RwLock<Arc<Brand>>> = std::sync::OnceLock::new();
    CURRENT.get_or_init(|| RwLock::new(Arc::new(Brand::default())))
}

/// The brand in force.
pub fn current() -> Arc<Brand> {
    cell().read().map(|b| b.clone()).unwrap_or_default()
}

/// Reads the brand from the database into memory (a failure keeps the one before, logged).
pub async fn refresh(db: &Db) {
    match db.brand(PROVIDER).await {
        Ok(stored) => {
            let brand = stored.as_ref().map(|b| Brand::from_stored(b, Scope::Provider)).unwrap_or_default();
            if let Ok(mut b) = cell().write() {
                if **b != brand {
                    *b = Arc::new(brand);
                }
            }
        }
        Err(e) => tracing::warn!("reading the brand: {e}"),
    }
}

/// A new brand as an admin sends it. The logo: `Some` replaces it, `remove_logo` drops it,
/// neither keeps the one stored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandInput {
    /// The product's name (1 to [`MAX_NAME`] characters).
    pub product_name: String,
    /// `#rrggbb` (empty: the default blue).
    #[serde(default)]
    pub accent: String,
    /// One support address (may be empty).
    #[serde(default)]
    pub support_email: String,
    /// An `https://` or `http://` address (may be empty).
    #[serde(default)]
    pub support_url: String,
    /// Text for the sign-in page (may be empty).
    #[serde(default)]
    pub sign_in_text: String,
    /// A PNG or JPEG logo, base64 (in the JSON API).
    #[serde(default)]
    pub logo_base64: Option<String>,
    /// Drop the stored logo.
    #[serde(default)]
    pub remove_logo: bool,
}

/// What a logo's first bytes say it is.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else {
        None
    }
}

impl BrandInput {
    /// The brand to store, with `previous`'s logo kept unless replaced or removed. Every field
    /// is checked: the colour lands in a style sheet and the address in a link, so only what
    /// cannot break out of them is accepted. SVG logos are refused (they can carry scripts).
    pub fn validate(&self, logo: Option<&[u8]>, previous: Option<&StoredBrand>) -> Result<StoredBrand, String> {
        let product_name = crate::limits::one_line("the product name", &self.product_name, MAX_NAME)?;
        if product_name.is_empty() {
            return Err("the product name cannot be empty".into());
        }
        let accent = match self.accent.trim() {
            "" => DEFAULT_ACCENT.to_string(),
            a if a.len() == 7 && a.starts_with('#') && a[1..].chars().all(|c| c.is_ascii_hexdigit()) => {
                a.to_ascii_lowercase()
            }
            a => return Err(format!("the colour must be like #1f6feb, not {a:?}")),
        };
        let support_email = crate::limits::one_line("the support address", &self.support_email, 200)?;
        if !support_email.is_empty() {
            match crate::alerts::parse_mailboxes(&support_email) {
                Ok(list) if list.len() == 1 => {}
                _ => return Err(format!("the support address {support_email:?} is not one e-mail address")),
            }
        }
        let support_url = crate::limits::one_line("the support site", &self.support_url, 200)?;
        if !support_url.is_empty() {
            let ok_scheme = support_url.starts_with("https://") || support_url.starts_with("http://");
            let ok_chars =
                support_url.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\'' | '<' | '>' | '\\'));
            if !ok_scheme || !ok_chars || support_url.len() < 10 {
                return Err(format!("the support site must be an https:// address, not {support_url:?}"));
            }
        }
        let sign_in_text = self.sign_in_text.trim().replace("\r\n", "\n");
        if sign_in_text.chars().any(|c| c.is_control() && c != '\n') {
            return Err("the sign-in text cannot hold control characters".into());
        }
        let n = sign_in_text.chars().count();
        if n > MAX_SIGN_IN_TEXT {
            return Err(format!("the sign-in text is at most {MAX_SIGN_IN_TEXT} characters; this one has {n}"));
        }
        let decoded;
        let logo = match (&self.logo_base64, logo) {
            (_, Some(bytes)) => Some(bytes),
            (Some(b64), None) => {
                if b64.len() > MAX_LOGO_BYTES * 4 / 3 + 8 {
                    return Err(format!("the logo is larger than {} kB", MAX_LOGO_BYTES / 1024));
                }
                decoded = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| "the logo is not valid base64".to_string())?;
                Some(decoded.as_slice())
            }
            (None, None) => None,
        };
        let (logo_type, logo) = match (logo.filter(|l| !l.is_empty()), self.remove_logo, previous) {
            (Some(bytes), _, _) => {
                if bytes.len() > MAX_LOGO_BYTES {
                    return Err(format!(
                        "the logo has {} kB; at most {} kB",
                        bytes.len().div_ceil(1024),
                        MAX_LOGO_BYTES / 1024
                    ));
                }
                let t = image_type(bytes).ok_or("the logo must be a PNG or JPEG image")?;
                (t.to_string(), base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            (None, true, _) | (None, false, None) => (String::new(), String::new()),
            (None, false, Some(p)) => (p.logo_type.clone(), p.logo.clone()),
        };
        Ok(StoredBrand {
            product_name,
            accent,
            logo_type,
            logo,
            support_email,
            support_url,
            sign_in_text,
            updated_at: 0,
        })
    }
}

/// Reseller `id`'s own brand, if it set one (a failure to read it is logged, and the provider's
/// brand shows instead).
pub async fn of_reseller(db: &Db, id: i64) -> Option<Brand> {
    let scope = Scope::Reseller(id);
    match db.brand(&scope.key()).await {
        Ok(stored) => stored.map(|b| Brand::from_stored(&b, scope)),
        Err(e) => {
            tracing::warn!("reading reseller {id}'s brand: {e}");
            None
        }
    }
}

/// The brand in force for `scope`: a reseller's own, else the provider's.
pub async fn in_force(db: &Db, scope: Scope) -> Arc<Brand> {
    match scope {
        Scope::Reseller(id) => of_reseller(db, id).await.map(Arc::new).unwrap_or_else(current),
        Scope::Provider => current(),
    }
}

/// The logo's bytes and type of `scope`, if one is set.
pub async fn logo(db: &Db, scope: Scope) -> Option<(String, Vec<u8>)> {
    let b = db.brand(&scope.key()).await.ok()??;
    if b.logo_type.is_empty() {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(b.logo).ok()?;
    Some((b.logo_type, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str) -> BrandInput {
        BrandInput { product_name: name.into(), ..Default::default() }
    }

    #[test]
    fn fields_that_land_in_pages_are_checked() {
        assert!(input("").validate(None, None).is_err());
        assert!(input(&"x".repeat(41)).validate(None, None).is_err());
        let ok = input("SafeBox").validate(None, None).unwrap();
        assert_eq!((ok.product_name.as_str(), ok.accent.as_str()), ("SafeBox", DEFAULT_ACCENT));
        for bad in ["red", "#12345", "#12345g", "#123456;}body{"] {
            let b = BrandInput { accent: bad.into(), ..input("x") };
            assert!(b.validate(None, None).is_err(), "{bad}");
        }
        let b = BrandInput { accent: "#A0B1C2".into(), ..input("x") };
        assert_eq!(b.validate(None, None).unwrap().accent, "#a0b1c2");
        for bad in ["javascript:alert(1)", "https://x.example/\"onmouseover=", "ftp://files.example"] {
            let b = BrandInput { support_url: bad.into(), ..input("x") };
            assert!(b.validate(None, None).is_err(), "{bad}");
        }
        let b = BrandInput { support_email: "a@x.example, b@x.example".into(), ..input("x") };
        assert!(b.validate(None, None).is_err(), "one address");
        let b = BrandInput { sign_in_text: "x".repeat(501), ..input("x") };
        assert!(b.validate(None, None).is_err());
    }

    #[test]
    fn logos_are_png_or_jpeg_bounded_and_kept_unless_replaced() {
        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        let svg = b"<svg onload=alert(1)>".to_vec();
        assert!(input("x").validate(Some(&svg), None).is_err(), "SVG can carry scripts");
        let mut big = png.clone();
        big.resize(MAX_LOGO_BYTES + 1, 0);
        assert!(input("x").validate(Some(&big), None).is_err());
        let stored = input("x").validate(Some(&png), None).unwrap();
        assert_eq!(stored.logo_type, "image/png");
        let kept = input("y").validate(None, Some(&stored)).unwrap();
        assert_eq!(kept.logo, stored.logo, "no new logo keeps the old one");
        let removed = BrandInput { remove_logo: true, ..input("y") }.validate(None, Some(&stored)).unwrap();
        assert!(removed.logo.is_empty());
        let b64 = BrandInput { logo_base64: Some("not base64!".into()), ..input("x") };
        assert!(b64.validate(None, None).is_err());
    }

    #[test]
    fn the_support_line_names_what_is_set() {
        let mut b = Brand::default();
        assert_eq!(b.support_line(), "");
        b.support_email = "help@safebox.example".into();
        assert_eq!(b.support_line(), "Support: help@safebox.example");
    }
}
