//! Project environment variables and contexts: names with ciphertext (encrypted by `crate::secrets`) and the
//! masked form the API shows (`xxxx` + last 4). Values are never read back in clear here: the caller decrypts.

use serde::Serialize;

use super::{col, now_ms, Result, Store, StoreError};

/// A variable as listed: its name and masked value only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaskedVar {
    pub name: String,
    pub masked: String,
}

impl Store {
    /// Sets (or replaces) project variable `name`.
    pub async fn set_env_var(&self, project_id: i64, name: &str, ciphertext: &str, masked: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO env_vars (project_id, name, ciphertext, masked, created_at) VALUES ($1, $2, $3, $4, $5) ON \
             CONFLICT (project_id, name) DO UPDATE SET ciphertext = excluded.ciphertext, masked = excluded.masked, \
             created_at = excluded.created_at",
        )
        .bind(project_id)
        .bind(name)
        .bind(ciphertext)
        .bind(masked)
        .bind(now_ms())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    pub async fn env_vars(&self, project_id: i64) -> Result<Vec<MaskedVar>> {
        let rows = sqlx::query("SELECT name, masked FROM env_vars WHERE project_id = $1 ORDER BY name")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(MaskedVar { name: col(r, "name")?, masked: col(r, "masked")? })).collect()
    }

    /// Sets (or replaces) variable `name` of context `context`, creating the context.
    pub async fn set_context_var(&self, context: &str, name: &str, ciphertext: &str, masked: &str) -> Result<()> {
        let mut w = self.write().await?;
        sqlx::query("INSERT INTO contexts (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(context)
            .bind(now_ms())
            .execute(&mut *w.tx)
            .await?;
        sqlx::query(
            "INSERT INTO context_vars (context_id, name, ciphertext, masked, created_at) SELECT id, $2, $3, $4, $5 \
             FROM contexts WHERE name = $1 ON CONFLICT (context_id, name) DO UPDATE SET ciphertext = \
             excluded.ciphertext, masked = excluded.masked, created_at = excluded.created_at",
        )
        .bind(context)
        .bind(name)
        .bind(ciphertext)
        .bind(masked)
        .bind(now_ms())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await
    }

    /// Deletes project variable `name`.
    pub async fn delete_env_var(&self, project_id: i64, name: &str) -> Result<()> {
        let mut w = self.write().await?;
        let done = sqlx::query("DELETE FROM env_vars WHERE project_id = $1 AND name = $2")
            .bind(project_id)
            .bind(name)
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("environment variable `{name}`")));
        }
        Ok(())
    }

    /// The names of all contexts.
    pub async fn contexts(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM contexts ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(|r| col(r, "name")).collect()
    }

    /// Creates an empty context; a name taken already is a conflict.
    pub async fn create_context(&self, name: &str) -> Result<()> {
        let mut w = self.write().await?;
        let done = sqlx::query("INSERT INTO contexts (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(now_ms())
            .execute(&mut *w.tx)
            .await?;
        w.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("context `{name}` exists already")));
        }
        Ok(())
    }

    /// Deletes a context with its variables.
    pub async fn delete_context(&self, name: &str) -> Result<()> {
        let mut w = self.write().await?;
        let done = sqlx::query("DELETE FROM contexts WHERE name = $1").bind(name).execute(&mut *w.tx).await?;
        w.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("context `{name}`")));
        }
        Ok(())
    }

    /// A context's variables, masked.
    pub async fn context_vars(&self, context: &str) -> Result<Vec<MaskedVar>> {
        let exists = sqlx::query("SELECT id FROM contexts WHERE name = $1").bind(context).fetch_optional(&self.pool);
        if exists.await?.is_none() {
            return Err(StoreError::NotFound(format!("context `{context}`")));
        }
        let rows = sqlx::query(
            "SELECT v.name, v.masked FROM context_vars v JOIN contexts c ON c.id = v.context_id WHERE c.name = $1 \
             ORDER BY v.name",
        )
        .bind(context)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(MaskedVar { name: col(r, "name")?, masked: col(r, "masked")? })).collect()
    }

    /// Deletes variable `name` of context `context`.
    pub async fn delete_context_var(&self, context: &str, name: &str) -> Result<()> {
        let mut w = self.write().await?;
        let done = sqlx::query(
            "DELETE FROM context_vars WHERE name = $2 AND context_id = (SELECT id FROM contexts WHERE name = $1)",
        )
        .bind(context)
        .bind(name)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("variable `{name}` of context `{context}`")));
        }
        Ok(())
    }

    /// `(name, ciphertext)` of the variables a job sees: the project's, then each context's in order (a later
    /// one overrides an earlier one of the same name, as CircleCI does).
    pub async fn secret_ciphertexts(&self, project_id: i64, contexts: &[String]) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let rows = sqlx::query("SELECT name, ciphertext FROM env_vars WHERE project_id = $1 ORDER BY name")
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        for r in &rows {
            out.push((col(r, "name")?, col(r, "ciphertext")?));
        }
        for context in contexts {
            let rows = sqlx::query(
                "SELECT v.name, v.ciphertext FROM context_vars v JOIN contexts c ON c.id = v.context_id WHERE c.name = \
                 $1 ORDER BY v.name",
            )
            .bind(context)
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                out.push((col(r, "name")?, col(r, "ciphertext")?));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing;

    #[tokio::test]
    async fn variables_list_masked_and_contexts_follow_the_project() {
        for db in testing::databases().await {
            let s = &db.store;
            let project = crate::store::jobs::tests::project(s).await;
            s.set_env_var(project, "TOKEN", "c1", "xxxxabcd").await.unwrap_or_else(|e| panic!("{e}"));
            s.set_env_var(project, "TOKEN", "c2", "xxxxefgh").await.unwrap_or_else(|e| panic!("{e}"));
            s.set_context_var("deploy", "TOKEN", "c3", "xxxx1234").await.unwrap_or_else(|e| panic!("{e}"));
            s.set_context_var("deploy", "KEY", "c4", "xxxx5678").await.unwrap_or_else(|e| panic!("{e}"));
            let listed = s.env_vars(project).await.unwrap_or_default();
            assert_eq!(
                listed.iter().map(|v| (v.name.as_str(), v.masked.as_str())).collect::<Vec<_>>(),
                [("TOKEN", "xxxxefgh")]
            );
            let all = s.secret_ciphertexts(project, &["deploy".into()]).await.unwrap_or_default();
            let all: Vec<(&str, &str)> = all.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
            assert_eq!(all, [("TOKEN", "c2"), ("KEY", "c4"), ("TOKEN", "c3")], "{}", db.name);
        }
    }
}
