//! History retention: answered messages, finished conversations,
//! auctions and negotiations, publications and past days' usage older than
//! a cut-off, and agent revisions beyond the newest N, are deleted by a
//! replicated command. The cut-off travels in the command (the leader reads
//! its clock when proposing), so every replica deletes exactly the same rows.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::envelope::{ApplyCtx, Proposal, Response};
use caxton_cluster::CachedSql;

/// Deletes history: messages created before `before_ms` that no longer wait
/// for anything (not `accepted`), conversations with no message left, and
/// all but the newest `keep_versions` revisions of each agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PruneHistory {
    pub before_ms: i64,
    pub keep_versions: u64,
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pruned {
    pub messages: usize,
    pub conversations: usize,
    pub versions: usize,
}

impl Proposal for PruneHistory {
    type Output = Pruned;
    const NAME: &'static str = "PruneHistory";
    const FEATURE: Option<&'static str> = Some("PruneHistory");
    fn output(r: Response) -> Result<Pruned, Response> {
        match r {
            Response::Pruned { messages, conversations, versions } => Ok(Pruned { messages, conversations, versions }),
            other => Err(other),
        }
    }
}

impl PruneHistory {
    pub(crate) fn apply(self, ctx: &mut ApplyCtx<'_, '_>) -> rusqlite::Result<Response> {
        // A request still waiting for its answer is never pruned, nor the
        // reply of one that is kept.
        let messages = ctx.tx.exec(
            "DELETE FROM messages WHERE created_at < ?1 AND status != 'accepted'
               AND id NOT IN (SELECT reply_id FROM messages WHERE status = 'accepted' AND reply_id IS NOT NULL)",
            params![self.before_ms],
        )?;
        let conversations = ctx.tx.exec(
            "DELETE FROM conversations WHERE updated_at < ?1
               AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = conversations.id)",
            params![self.before_ms],
        )?;
        // The protocols' own history goes with the messages: finished
        // auctions and negotiations, publications, and past days' usage.
        // (Their tables only hold rows once every voter runs a version
        // that has them, so older replicas cannot disagree about them.)
        for table in ["auctions", "negotiations"] {
            ctx.tx.exec(
                &format!("DELETE FROM {table} WHERE created_at < ?1 AND state != 'open'"),
                params![self.before_ms],
            )?;
        }
        ctx.tx.exec("DELETE FROM publications WHERE created_at < ?1", params![self.before_ms])?;
        ctx.tx.exec("DELETE FROM agent_usage WHERE day < ?1", params![super::messages::day_of(self.before_ms)])?;
        let versions = ctx.tx.exec(
            "DELETE FROM agent_versions WHERE revision <=
               (SELECT MAX(v.revision) FROM agent_versions v WHERE v.name_key = agent_versions.name_key) - ?1
               AND revision NOT IN (SELECT a.revision FROM agents a WHERE a.name_key = agent_versions.name_key)",
            params![self.keep_versions as i64],
        )?;
        Ok(Response::Pruned { messages, conversations, versions })
    }
}
