//! Dashboard users and sessions in the store (migration 0002): a user's argon2 hash (made by
//! `web::hash_password`), and sessions addressed by the SHA-256 of their token, never the token itself.

use crate::store::{col, now_ms, Result, Store, StoreError};

/// A stored user with their password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub password_hash: String,
    pub is_admin: bool,
}

/// A stored session joined with its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user_id: i64,
    pub user_name: String,
    pub csrf_token: String,
    pub expires_at: i64,
    pub is_admin: bool,
}

impl Store {
    /// Adds a user; a taken name is a conflict.
    pub async fn add_user(&self, name: &str, password_hash: &str, is_admin: bool) -> Result<i64> {
        let mut w = self.write().await?;
        let taken = sqlx::query("SELECT id FROM users WHERE name = $1").bind(name).fetch_optional(&mut *w.tx).await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!("user `{name}` exists already: pick another name")));
        }
        let row = sqlx::query(
            "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(password_hash)
        .bind(is_admin as i64)
        .bind(now_ms())
        .fetch_one(&mut *w.tx)
        .await?;
        let id = col(&row, "id")?;
        w.commit().await?;
        Ok(id)
    }

    /// The user named `name` (exact match).
    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query("SELECT id, name, password_hash, is_admin FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(UserRow {
                id: col(&r, "id")?,
                name: col(&r, "name")?,
                password_hash: col(&r, "password_hash")?,
                is_admin: col::<i64>(&r, "is_admin")? != 0,
            })
        })
        .transpose()
    }

    /// How many users exist (`script/server` creates the first admin only once).
    pub async fn user_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(self.pool()).await?;
        col(&row, "n")
    }

    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        csrf_token: &str,
        expires_at: i64,
    ) -> Result<()> {
        let mut w = self.write().await?;
        let now = now_ms();
        // Expired sessions go when new ones come, so the table does not grow without bound.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(now).execute(&mut *w.tx).await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(expires_at)
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    pub async fn session_by_token_hash(&self, token_hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query(
            "SELECT s.user_id, u.name, u.is_admin, s.csrf_token, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(SessionRow {
                user_id: col(&r, "user_id")?,
                user_name: col(&r, "name")?,
                csrf_token: col(&r, "csrf_token")?,
                expires_at: col(&r, "expires_at")?,
                is_admin: col::<i64>(&r, "is_admin")? != 0,
            })
        })
        .transpose()
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&mut *w.tx).await?;
        w.commit().await
    }
}
