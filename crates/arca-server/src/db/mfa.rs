//! Two-factor sign-in: a TOTP secret per user, one-time recovery codes, and the short-lived
//! challenge between the password step and the code step.

use super::accounts::{hash_token, new_token, CODE_LOCKOUT_AFTER, LOCKOUT_SECS};
use super::{col, now, Db, DbError, Result};
use crate::totp;

/// How long the code step may follow the password step.
pub const CHALLENGE_SECS: i64 = 300;
/// Recovery codes issued at enrolment.
pub const RECOVERY_CODES: usize = 10;

fn recovery_hash(code: &str) -> String {
    let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase();
    blake3::hash(normal.as_bytes()).to_hex().to_string()
}

/// A recovery code: 16 base32 characters (80 random bits) in groups of four.
fn new_recovery_code() -> String {
    let raw = totp::base32(&rand::random::<[u8; 10]>());
    raw.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
}

/// Replaces a user's recovery codes by [`RECOVERY_CODES`] new ones, inside `tx`.
async fn replace_recovery_codes(tx: &mut sqlx::Transaction<'_, sqlx::Any>, user_id: i64) -> Result<Vec<String>> {
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut **tx).await?;
    for c in &codes {
        sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(user_id)
            .bind(recovery_hash(c))
            .execute(&mut **tx)
            .await?;
    }
    Ok(codes)
}

impl Db {
    /// Seals the two-factor seeds stored in plaintext (by a version before sealing); returns how
    /// many it sealed.
    pub async fn seal_plaintext_secrets(&self) -> Result<u64> {
        let rows = sqlx::query(
            "SELECT id, totp_secret, totp_pending FROM users WHERE totp_secret <> '' OR totp_pending <> ''",
        )
        .fetch_all(self.pool())
        .await?;
        let sealer = self.secret_box();
        let mut sealed = 0;
        for row in rows {
            let id: i64 = col(&row, "id")?;
            for column in ["totp_secret", "totp_pending"] {
                let value: String = col(&row, column)?;
                if value.is_empty() || crate::secrets::SecretBox::is_sealed(&value) {
                    continue;
                }
                super::dyn_query(format!("UPDATE users SET {column} = $1 WHERE id = $2 AND {column} = $3"))
                    .bind(sealer.seal(&value))
                    .bind(id)
                    .bind(&value)
                    .execute(self.pool())
                    .await?;
                sealed += 1;
            }
        }
        Ok(sealed)
    }

    /// Whether the user signs in with a second factor.
    pub async fn totp_enabled(&self, user_id: i64) -> Result<bool> {
        let s: String = sqlx::query_scalar("SELECT totp_secret FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(self.pool())
            .await?;
        Ok(!s.is_empty())
    }

    /// Starts enrolment: a new pending secret (active only once a code from it is confirmed).
    pub async fn begin_totp(&self, user_id: i64) -> Result<String> {
        let secret = totp::new_secret();
        sqlx::query("UPDATE users SET totp_pending = $1 WHERE id = $2")
            .bind(self.secret_box().seal(&secret))
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(secret)
    }

    /// Finishes enrolment with a code from the pending secret; returns the recovery codes (shown
    /// once, stored only hashed).
    pub async fn confirm_totp(&self, user_id: i64, code: &str) -> Result<Vec<String>> {
        let pending: String = sqlx::query_scalar("SELECT totp_pending FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(self.pool())
            .await?;
        if pending.is_empty() {
            return Err(DbError::Invalid("start the enrolment again: there is no pending secret".into()));
        }
        let pending = self.secret_box().open(&pending).map_err(|e| DbError::Invalid(e.to_string()))?;
        let Some(step) = totp::verify(&pending, code, now() as u64, 0) else {
            return Err(DbError::Invalid(
                "that code does not match: check the device's clock and try the next code".into(),
            ));
        };
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "UPDATE users SET totp_secret = totp_pending, totp_pending = '', totp_last_step = $1 WHERE id = $2",
        )
        .bind(step as i64)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let codes = replace_recovery_codes(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(codes)
    }

    /// New recovery codes for a user with two-factor sign-in on (after the caller checked a
    /// current code): the old ones stop working. Shown once, stored only hashed.
    pub async fn new_recovery_codes(&self, user_id: i64) -> Result<Vec<String>> {
        if !self.totp_enabled(user_id).await? {
            return Err(DbError::Invalid("two-factor sign-in is off: there are no recovery codes to renew".into()));
        }
        let mut tx = self.pool().begin().await?;
        let codes = replace_recovery_codes(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(codes)
    }

    /// Turns the second factor off (after the caller checked a current code, or an admin reset
    /// it for a user who lost their device).
    pub async fn disable_totp(&self, user_id: i64) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE users SET totp_secret = '', totp_pending = '' WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks a second factor: a TOTP code (each accepted once) or an unused recovery code
    /// (then used up). A wrong one counts toward the account's lockout.
    pub async fn check_second_factor(&self, user_id: i64, code: &str) -> Result<bool> {
        let row = sqlx::query("SELECT totp_secret, totp_last_step, locked_until FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(self.pool())
            .await?;
        let secret: String = col(&row, "totp_secret")?;
        let secret = self.secret_box().open(&secret).map_err(|e| DbError::Invalid(e.to_string()))?;
        let last: i64 = col(&row, "totp_last_step")?;
        if col::<i64>(&row, "locked_until")? > now() {
            return Ok(false);
        }
        let digits: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        let ok = if digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit()) {
            match totp::verify(&secret, &digits, now() as u64, last.max(0) as u64) {
                // Only one request can move the step forward: a replayed code loses the race.
                Some(step) => {
                    sqlx::query("UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1")
                        .bind(step as i64)
                        .bind(user_id)
                        .execute(self.pool())
                        .await?
                        .rows_affected()
                        == 1
                }
                None => false,
            }
        } else {
            sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at = 0")
                .bind(now())
                .bind(user_id)
                .bind(recovery_hash(code))
                .execute(self.pool())
                .await?
                .rows_affected()
                == 1
        };
        if ok {
            sqlx::query("UPDATE users SET failed_logins = 0 WHERE id = $1").bind(user_id).execute(self.pool()).await?;
        } else {
            let failed: i64 = sqlx::query_scalar(
                "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
            )
            .bind(user_id)
            .fetch_one(self.pool())
            .await?;
            if failed >= CODE_LOCKOUT_AFTER {
                sqlx::query("UPDATE users SET failed_logins = 0, locked_until = $1 WHERE id = $2")
                    .bind(now() + LOCKOUT_SECS)
                    .bind(user_id)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(ok)
    }

    /// Remembers that `user_id` passed the password step; returns the challenge token.
    pub async fn create_challenge(&self, user_id: i64) -> Result<String> {
        let token = new_token();
        sqlx::query("DELETE FROM login_challenges WHERE expires_at < $1").bind(now()).execute(self.pool()).await?;
        sqlx::query("INSERT INTO login_challenges (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
            .bind(hash_token(&token))
            .bind(user_id)
            .bind(now() + CHALLENGE_SECS)
            .execute(self.pool())
            .await?;
        Ok(token)
    }

    /// The user of a live challenge.
    pub async fn challenge_user(&self, token: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT user_id FROM login_challenges WHERE token_hash = $1 AND expires_at >= $2")
            .bind(hash_token(token))
            .bind(now())
            .fetch_optional(self.pool())
            .await?)
    }

    /// Ends a challenge (signed in).
    pub async fn end_challenge(&self, token: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_challenges WHERE token_hash = $1")
            .bind(hash_token(token))
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::db::accounts::Role;
    use crate::db::testing::databases;
    use crate::totp;

    /// Issue 12: the database held TOTP seeds in plaintext. They are sealed under the server key;
    /// a copy of the database alone does not give them away, and old plaintext seeds are sealed.
    #[tokio::test]
    async fn totp_seeds_are_sealed_at_rest() {
        for (db, _guard) in databases().await {
            db.set_secret_box(crate::secrets::SecretBox::new(&[9; 32]));
            let u = db.create_user("sealed", "long enough password", Role::ProviderAdmin, None).await.unwrap();
            let secret = db.begin_totp(u.id).await.unwrap();
            let code = totp::code_at(&totp::unbase32(&secret).unwrap(), crate::db::now() as u64 / totp::STEP);
            db.confirm_totp(u.id, &code).await.unwrap();
            let stored: String = sqlx::query_scalar("SELECT totp_secret FROM users WHERE id = $1")
                .bind(u.id)
                .fetch_one(db.pool())
                .await
                .unwrap();
            assert!(crate::secrets::SecretBox::is_sealed(&stored) && !stored.contains(&secret), "{stored}");
            // Another key cannot use it (the check fails closed).
            db.set_secret_box(crate::secrets::SecretBox::new(&[8; 32]));
            assert!(db.check_second_factor(u.id, &code).await.is_err());
            // A seed stored in plaintext by an older version is sealed at start and still works.
            db.set_secret_box(crate::secrets::SecretBox::new(&[9; 32]));
            sqlx::query("UPDATE users SET totp_secret = $1, totp_last_step = 0 WHERE id = $2")
                .bind(&secret)
                .bind(u.id)
                .execute(db.pool())
                .await
                .unwrap();
            assert_eq!(db.seal_plaintext_secrets().await.unwrap(), 1);
            assert!(db.check_second_factor(u.id, &code).await.unwrap());
        }
    }

    #[tokio::test]
    async fn enrolment_codes_recovery_and_challenges() {
        for (db, _guard) in databases().await {
            let u = db.create_user("boss", "long enough password", Role::ProviderAdmin, None).await.unwrap();
            assert!(!db.totp_enabled(u.id).await.unwrap());
            let secret = db.begin_totp(u.id).await.unwrap();
            let now = crate::db::now() as u64;
            let far = totp::code_at(&totp::unbase32(&secret).unwrap(), now / totp::STEP + 100);
            assert!(db.confirm_totp(u.id, &far).await.is_err(), "a code from another time does not confirm");
            let code = totp::code_at(&totp::unbase32(&secret).unwrap(), now / totp::STEP);
            let recovery = db.confirm_totp(u.id, &code).await.unwrap();
            assert_eq!(recovery.len(), 10);
            assert!(db.totp_enabled(u.id).await.unwrap());
            assert!(!db.check_second_factor(u.id, &code).await.unwrap(), "the enrolment code cannot be replayed");
            // Pretend the enrolment happened steps ago, so the current code is fresh.
            sqlx::query("UPDATE users SET totp_last_step = 0").execute(db.pool()).await.unwrap();
            assert!(db.check_second_factor(u.id, &code).await.unwrap());
            assert!(!db.check_second_factor(u.id, &code).await.unwrap(), "a code works once");
            assert!(db.check_second_factor(u.id, &recovery[3].to_lowercase()).await.unwrap());
            assert!(!db.check_second_factor(u.id, &recovery[3]).await.unwrap(), "a recovery code works once");
            let ch = db.create_challenge(u.id).await.unwrap();
            assert_eq!(db.challenge_user(&ch).await.unwrap(), Some(u.id));
            db.end_challenge(&ch).await.unwrap();
            assert_eq!(db.challenge_user(&ch).await.unwrap(), None);
            // Knowing the password does not reset the count of wrong codes: guessing stays
            // limited to the lockout.
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = 0").execute(db.pool()).await.unwrap();
            for _ in 0..crate::db::accounts::CODE_LOCKOUT_AFTER - 1 {
                assert!(matches!(
                    db.check_login("boss", "long enough password").await.unwrap(),
                    crate::db::accounts::LoginOutcome::Ok(_)
                ));
                assert!(!db.check_second_factor(u.id, "not-a-code").await.unwrap());
            }
            assert!(!db.check_second_factor(u.id, "still-not-a-code").await.unwrap());
            assert!(matches!(
                db.check_login("boss", "long enough password").await.unwrap(),
                crate::db::accounts::LoginOutcome::Locked { .. }
            ));
            db.disable_totp(u.id).await.unwrap();
            assert!(!db.totp_enabled(u.id).await.unwrap());
        }
    }
}
