//! Per-event handling: a frame split into events, each parsed, checked against the token's
//! book and event time, deduplicated, and published; a broken check starts a resync.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Shard {
    pub(super) async fn frame(
        &mut self,
        socket: &mut Socket,
        session: &mut Session,
        text: &str,
    ) -> Result<(), SessionEnd> {
        let received_ms = now_ms();
        let events = match parse::split_frame(text) {
            Ok(events) => events,
            Err(problem) => {
                return self
                    .dead_letter(
                        session,
                        "garbage_frame",
                        &problem.to_string(),
                        text.to_owned(),
                    )
                    .await
                    .map_err(SessionEnd::Failed);
            }
        };
        for raw in events {
            let hash = session.hasher.hash_one(raw);
            if session.previous_event == Some(hash) {
                // The same bytes twice in a row carry nothing new (ws_duplicate upstream):
                // every event carries its time, and books/changes are absolute.
                DuplicateDropped {
                    connection_id: &session.connection_id,
                }
                .emit();
                continue;
            }
            session.previous_event = Some(hash);
            let stamp = Stamp {
                connection_id: &session.connection_id,
                sequence: session.sequence + 1,
                received_ms,
            };
            match parse::parse_event(raw, stamp) {
                Ok(event) => self.event(socket, session, event).await?,
                Err(problem) => {
                    let reason = match problem {
                        ParseProblem::UnknownEventType(_) => "unknown_event_type",
                        _ => "invalid_event",
                    };
                    self.dead_letter(session, reason, &problem.to_string(), raw.to_owned())
                        .await
                        .map_err(SessionEnd::Failed)?;
                }
            }
        }
        Ok(())
    }

    pub(super) async fn event(
        &mut self,
        socket: &mut Socket,
        session: &mut Session,
        event: MarketEvent,
    ) -> Result<(), SessionEnd> {
        EventRead {
            event_type: event.event_type(),
        }
        .emit();
        match event {
            MarketEvent::Book(book) => {
                if !self.tokens.contains(&book.token_id) {
                    return Ok(());
                }
                session.sequence += 1;
                self.saw_upstream_time(book.timestamp_ms);
                session.checker.snapshot(&book);
                if session.awaiting_dump.remove(&book.token_id) {
                    session.got_dump = session.got_dump || session.awaiting_dump.is_empty();
                }
                let closed = match session.resubscribed.get_mut(&book.token_id) {
                    // Until the resubscription settles, a book may be one the stream carried
                    // before upstream applied the unsubscribe: the gap stays open and will
                    // end at the newest book, the dump included (see `Resubscription`).
                    Some(resubscription) => {
                        resubscription.newest_book_ms =
                            resubscription.newest_book_ms.max(Some(book.timestamp_ms));
                        Vec::new()
                    }
                    None => self
                        .shared
                        .gaps
                        .recovered(&book.token_id, Some(book.timestamp_ms)),
                };
                self.publish(Outgoing::Book(book)).await?;
                for record in closed {
                    self.publish(Outgoing::Gap(record)).await?;
                }
            }
            MarketEvent::PriceChanges(mut changes) => {
                changes.retain(|change| self.tokens.contains(&change.token_id));
                if changes.is_empty() {
                    return Ok(());
                }
                session.sequence += 1;
                for change in changes {
                    self.saw_upstream_time(change.timestamp_ms);
                    let integrity = session.checker.change(&change);
                    let token = change.token_id.clone();
                    self.publish(Outgoing::Change(change)).await?;
                    self.check(socket, session, &token, integrity).await?;
                }
            }
            MarketEvent::LastTrade(trade) => {
                if !self.tokens.contains(&trade.token_id) {
                    return Ok(());
                }
                session.sequence += 1;
                self.saw_upstream_time(trade.timestamp_ms);
                let integrity = session
                    .checker
                    .event_time(&trade.token_id, trade.timestamp_ms);
                let token = trade.token_id.clone();
                self.publish(Outgoing::Trade(trade)).await?;
                self.check(socket, session, &token, integrity).await?;
            }
            MarketEvent::TickSizeChange(tick) => {
                if !self.tokens.contains(&tick.token_id) {
                    return Ok(());
                }
                session.sequence += 1;
                self.saw_upstream_time(tick.timestamp_ms);
                let integrity = session
                    .checker
                    .event_time(&tick.token_id, tick.timestamp_ms);
                let token = tick.token_id.clone();
                self.publish(Outgoing::Tick(tick)).await?;
                self.check(socket, session, &token, integrity).await?;
            }
            MarketEvent::BestBidAsk(quote) => {
                if !self.tokens.contains(&quote.token_id) {
                    return Ok(());
                }
                session.sequence += 1;
                self.saw_upstream_time(quote.timestamp_ms);
                let integrity = session
                    .checker
                    .event_time(&quote.token_id, quote.timestamp_ms);
                let token = quote.token_id.clone();
                self.publish(Outgoing::Quote(quote)).await?;
                self.check(socket, session, &token, integrity).await?;
            }
            MarketEvent::Lifecycle(lifecycle) => {
                let first_sighting = self
                    .shared
                    .lifecycle_seen
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert((
                        lifecycle.kind,
                        lifecycle.condition_id.clone(),
                        lifecycle.timestamp_ms,
                    ));
                if !first_sighting {
                    return Ok(());
                }
                session.sequence += 1;
                let report = match lifecycle.kind {
                    LifecycleKind::NewMarket => Report::NewMarket {
                        condition_id: lifecycle.condition_id.clone(),
                        token_ids: lifecycle.token_ids.clone(),
                    },
                    LifecycleKind::MarketResolved => Report::MarketResolved {
                        condition_id: lifecycle.condition_id.clone(),
                    },
                };
                self.publish(Outgoing::Lifecycle(lifecycle)).await?;
                let _ = self.shared.reports.send(report);
            }
            MarketEvent::SubscriptionRefused {
                message,
                max_assets,
            } => {
                SubscriptionRefused {
                    connection_id: &session.connection_id,
                    message: &message,
                    max_assets,
                }
                .emit();
                // Declared before the supervisor can move tokens elsewhere, so the dump that
                // another connection gets for them closes this gap.
                let detail = format!("subscription refused: {message}");
                self.declare_gap(
                    ContinuityKind::SubscriptionRefused,
                    &session.connection_id,
                    detail.clone(),
                )
                .await
                .map_err(SessionEnd::Failed)?;
                let _ = self.shared.reports.send(Report::Refused {
                    shard: self.shard,
                    max_assets,
                });
                return Err(SessionEnd::Lost {
                    kind: ContinuityKind::SubscriptionRefused,
                    label: "subscription_refused",
                    detail,
                    healthy: false,
                    declared: true,
                });
            }
            MarketEvent::ServerError { code, message } => {
                let payload =
                    serde_json::json!({"event_type": "error", "code": code, "error": message});
                self.dead_letter(session, "server_error", &message, payload.to_string())
                    .await
                    .map_err(SessionEnd::Failed)?;
            }
        }
        Ok(())
    }

    /// A token whose stream broke is resubscribed for a fresh dump, and the gap declared.
    pub(super) async fn check(
        &mut self,
        socket: &mut Socket,
        session: &mut Session,
        token: &str,
        integrity: Integrity,
    ) -> Result<(), SessionEnd> {
        let Integrity::Broken {
            reason,
            valid_until_ms,
        } = integrity
        else {
            return Ok(());
        };
        if let Some(record) = self.shared.gaps.open(
            ContinuityKind::Resync,
            vec![token.to_owned()],
            valid_until_ms,
            &session.connection_id,
            reason,
        ) {
            self.publish(Outgoing::Gap(record)).await?;
        }
        session.checker.mark_resyncing(token);
        session.awaiting_dump.insert(token.to_owned());
        let settles_at = Instant::now() + self.shared.tuning.dump_timeout;
        // A second resubscription of the token opens a second window: settle after it.
        session
            .resubscribed
            .entry(token.to_owned())
            .or_insert(Resubscription {
                settles_at,
                newest_book_ms: None,
            })
            .settles_at = settles_at;
        session.dump_deadline = Some(
            session
                .dump_deadline
                .map_or(settles_at, |deadline| deadline.min(settles_at)),
        );
        let tokens = [token.to_owned()];
        Self::send_operation(socket, "unsubscribe", &tokens).await?;
        Self::send_operation(socket, "subscribe", &tokens).await
    }
}
