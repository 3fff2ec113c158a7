//! The provider's brand (white label), one row per scope: `provider` today; a reseller's own
//! brand would be a row of its own.

use super::{col, now, Db, Result};

/// A brand as stored. Checked before it is stored ([`crate::branding::BrandInput::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredBrand {
    /// The product's name, shown in every page's header and title and in e-mail subjects.
    pub product_name: String,
    /// The accent colour, `#rrggbb`.
    pub accent: String,
    /// `image/png` or `image/jpeg`; empty: no logo.
    pub logo_type: String,
    /// The logo's bytes, base64.
    pub logo: String,
    /// The support address shown to customers.
    pub support_email: String,
    /// The support site shown to customers.
    pub support_url: String,
    /// Text on the sign-in page.
    pub sign_in_text: String,
    /// When it was last changed (Unix seconds; the logo's address changes with it).
    pub updated_at: i64,
}

impl Db {
    /// The brand of `scope`, if one was set.
    pub async fn brand(&self, scope: &str) -> Result<Option<StoredBrand>> {
        let row = sqlx::query(
            "SELECT product_name, accent, logo_type, logo, support_email, support_url, sign_in_text, updated_at \
             FROM branding WHERE scope = $1",
        )
        .bind(scope)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(StoredBrand {
                product_name: col(&r, "product_name")?,
                accent: col(&r, "accent")?,
                logo_type: col(&r, "logo_type")?,
                logo: col(&r, "logo")?,
                support_email: col(&r, "support_email")?,
                support_url: col(&r, "support_url")?,
                sign_in_text: col(&r, "sign_in_text")?,
                updated_at: col(&r, "updated_at")?,
            })
        })
        .transpose()
    }

    /// Stores the brand of `scope` (replacing the one before); returns its change time.
    pub async fn set_brand(&self, scope: &str, b: &StoredBrand) -> Result<i64> {
        // Never the same second twice: the logo's address carries the time, and a browser must
        // not keep the old logo after a quick second change.
        let previous = self.brand(scope).await?.map_or(0, |p| p.updated_at);
        let at = now().max(previous + 1);
        sqlx::query(
            "INSERT INTO branding (scope, product_name, accent, logo_type, logo, support_email, support_url, \
             sign_in_text, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (scope) DO UPDATE SET product_name = excluded.product_name, accent = excluded.accent, \
             logo_type = excluded.logo_type, logo = excluded.logo, support_email = excluded.support_email, \
             support_url = excluded.support_url, sign_in_text = excluded.sign_in_text, updated_at = excluded.updated_at",
        )
        .bind(scope)
        .bind(&b.product_name)
        .bind(&b.accent)
        .bind(&b.logo_type)
        .bind(&b.logo)
        .bind(&b.support_email)
        .bind(&b.support_url)
        .bind(&b.sign_in_text)
        .bind(at)
        .execute(self.pool())
        .await?;
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::databases;

    #[tokio::test]
    async fn a_brand_is_stored_and_replaced() {
        for (db, _guard) in databases().await {
            assert_eq!(db.brand("provider").await.unwrap(), None);
            let mut b = StoredBrand { product_name: "SafeBox".into(), accent: "#aa0000".into(), ..Default::default() };
            let first = db.set_brand("provider", &b).await.unwrap();
            b.product_name = "SafeBox Cloud".into();
            let second = db.set_brand("provider", &b).await.unwrap();
            assert!(second > first, "each change has its own time");
            let got = db.brand("provider").await.unwrap().unwrap();
            assert_eq!(got.product_name, "SafeBox Cloud");
            assert_eq!(got.updated_at, second);
        }
    }
}
