//! One connection's session: the read loop (frames, pings, staleness, commands), sending
//! subscription operations, and publishing what the session reads.

#[allow(clippy::wildcard_imports)]
use super::*;

impl Shard {
    pub(super) async fn session(&mut self, mut socket: Socket, connection_id: &str) -> SessionEnd {
        let tokens: Vec<String> = self.tokens.iter().cloned().collect();
        let subscribe = serde_json::json!({
            "assets_ids": tokens,
            "type": "market",
            "initial_dump": true,
            "custom_feature_enabled": true,
        });
        ConnectionOpened {
            connection_id,
            tokens: tokens.len(),
        }
        .emit();
        if let Err(error) = socket.send(Message::text(subscribe.to_string())).await {
            return SessionEnd::Lost {
                kind: ContinuityKind::Disconnect,
                label: "send_failed",
                detail: format!("subscription could not be sent: {error}"),
                healthy: false,
                declared: false,
            };
        }
        let mut session = Session {
            connection_id: connection_id.to_owned(),
            sequence: 0,
            bad_frames: 0,
            awaiting_dump: tokens.iter().cloned().collect(),
            dump_deadline: Some(Instant::now() + self.shared.tuning.dump_timeout),
            checker: BookChecker::new(),
            previous_event: None,
            hasher: RandomState::new(),
            got_dump: false,
            resubscribed: HashMap::new(),
        };
        let end = self.session_loop(&mut socket, &mut session).await;
        if matches!(end, SessionEnd::Stopped) {
            // Declared open until the next start's dumps: nothing is read meanwhile.
            let tokens: Vec<String> = self.tokens.iter().cloned().collect();
            let start = self.gap_start_ms();
            if let Some(record) = self.shared.gaps.open(
                ContinuityKind::Disconnect,
                tokens,
                start,
                connection_id,
                "bridge stopped".to_owned(),
            ) {
                let _ = self.shared.publisher.publish(Outgoing::Gap(record)).await;
            }
            let _ = socket.close(None).await;
            ConnectionEnded {
                connection_id,
                reason: "stopped",
                detail: "",
                reconnecting: false,
            }
            .emit();
        } else {
            let _ = socket.close(None).await;
        }
        end
    }

    pub(super) async fn session_loop(
        &mut self,
        socket: &mut Socket,
        session: &mut Session,
    ) -> SessionEnd {
        let tuning = self.shared.tuning.clone();
        let tick = tuning.ping_interval.min(Duration::from_secs(1));
        let mut watchdog = tokio::time::interval(tick);
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_ping = Instant::now() + tuning.ping_interval;
        let mut awaiting_pong_since: Option<Instant> = None;
        let mut staleness = Staleness::new(tuning.staleness_min, tuning.staleness_max);
        loop {
            let dump_deadline = session.dump_deadline;
            tokio::select! {
                biased;
                () = self.shared.stop.cancelled() => return SessionEnd::Stopped,
                command = self.commands.recv() => {
                    let Some(command) = command else {
                        return SessionEnd::Stopped;
                    };
                    if let Err(end) = self.apply_online(socket, session, command).await {
                        return end;
                    }
                }
                message = socket.next() => {
                    let now = Instant::now();
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if text.as_str().trim() == "PONG" {
                                awaiting_pong_since = None;
                                continue;
                            }
                            staleness.observe(now);
                            if let Err(end) = self.frame(socket, session, text.as_str()).await {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            staleness.observe(now);
                            let text = String::from_utf8_lossy(&bytes).into_owned();
                            if let Err(error) = self
                                .dead_letter(session, "binary_frame", "binary frame on a text channel", text)
                                .await
                            {
                                return SessionEnd::Failed(error);
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            return SessionEnd::Lost {
                                kind: ContinuityKind::Disconnect,
                                label: "closed_by_server",
                                detail: format!("closed by the server ({frame:?})"),
                                healthy: session.got_dump,
                                declared: false,
                            };
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            return SessionEnd::Lost {
                                kind: ContinuityKind::Disconnect,
                                label: "socket_error",
                                detail: format!("socket error: {error}"),
                                healthy: session.got_dump,
                                declared: false,
                            };
                        }
                        None => {
                            return SessionEnd::Lost {
                                kind: ContinuityKind::Disconnect,
                                label: "socket_closed",
                                detail: "socket closed".to_owned(),
                                healthy: session.got_dump,
                                declared: false,
                            };
                        }
                    }
                }
                _ = watchdog.tick() => {
                    let now = Instant::now();
                    if let Some(since) = awaiting_pong_since
                        && now.duration_since(since) > tuning.pong_timeout
                    {
                        return SessionEnd::Lost {
                            kind: ContinuityKind::Disconnect,
                            label: "pong_timeout",
                            detail: format!("no PONG within {:?}", tuning.pong_timeout),
                            healthy: session.got_dump,
                            declared: false,
                        };
                    }
                    if staleness.is_stale(now) {
                        return SessionEnd::Lost {
                            kind: ContinuityKind::Freeze,
                            label: "freeze",
                            detail: format!(
                                "no data for {:?} while the connection stayed up (staleness window {:?})",
                                now.duration_since(staleness.last_frame),
                                staleness.window()
                            ),
                            healthy: session.got_dump,
                            declared: false,
                        };
                    }
                    if now >= next_ping {
                        next_ping = now + tuning.ping_interval;
                        if awaiting_pong_since.is_none() {
                            awaiting_pong_since = Some(now);
                        }
                        if let Err(error) = socket.send(Message::text("PING")).await {
                            return SessionEnd::Lost {
                                kind: ContinuityKind::Disconnect,
                                label: "send_failed",
                                detail: format!("PING could not be sent: {error}"),
                                healthy: session.got_dump,
                                declared: false,
                            };
                        }
                    }
                }
                () = async {
                    match dump_deadline {
                        Some(deadline) => sleep_until(deadline).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Err(error) = self.fetch_missing_books(session).await {
                        return SessionEnd::Failed(error);
                    }
                }
            }
        }
    }

    pub(super) async fn send_operation(
        socket: &mut Socket,
        operation: &str,
        tokens: &[String],
    ) -> Result<(), SessionEnd> {
        let message = if operation == "subscribe" {
            serde_json::json!({
                "operation": "subscribe",
                "assets_ids": tokens,
                "initial_dump": true,
                "custom_feature_enabled": true,
            })
        } else {
            serde_json::json!({"operation": operation, "assets_ids": tokens})
        };
        socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|error| SessionEnd::Lost {
                kind: ContinuityKind::Disconnect,
                label: "send_failed",
                detail: format!("{operation} could not be sent: {error}"),
                healthy: true,
                declared: false,
            })
    }

    pub(super) async fn apply_online(
        &mut self,
        socket: &mut Socket,
        session: &mut Session,
        command: Command,
    ) -> Result<(), SessionEnd> {
        match command {
            #[cfg(test)]
            #[allow(clippy::panic)]
            Command::Panic => panic!("shard {} asked to panic by a test", self.shard),
            Command::Add(tokens) => {
                let new: Vec<String> = tokens
                    .into_iter()
                    .filter(|token| !self.tokens.contains(token))
                    .collect();
                if new.is_empty() {
                    return Ok(());
                }
                self.tokens.extend(new.iter().cloned());
                session.awaiting_dump.extend(new.iter().cloned());
                if session.dump_deadline.is_none() {
                    session.dump_deadline = Some(Instant::now() + self.shared.tuning.dump_timeout);
                }
                Self::send_operation(socket, "subscribe", &new).await
            }
            Command::Remove { tokens, moved } => {
                let removed: Vec<String> = tokens
                    .into_iter()
                    .filter(|token| self.tokens.remove(token))
                    .collect();
                for token in &removed {
                    session.checker.remove(token);
                    session.awaiting_dump.remove(token);
                    session.resubscribed.remove(token);
                    if !moved {
                        for record in self.shared.gaps.recovered(token, None) {
                            self.publish(Outgoing::Gap(record)).await?;
                        }
                    }
                }
                if removed.is_empty() {
                    return Ok(());
                }
                Self::send_operation(socket, "unsubscribe", &removed).await
            }
        }
    }

    pub(super) async fn publish(&self, record: Outgoing) -> Result<(), SessionEnd> {
        self.shared
            .publisher
            .publish_from(Some(self.shard), record)
            .await
            .map_err(SessionEnd::Failed)
    }

    pub(super) async fn dead_letter(
        &self,
        session: &mut Session,
        reason: &'static str,
        error: &str,
        payload: String,
    ) -> Result<(), BridgeError> {
        DeadLettered {
            connection_id: &session.connection_id,
            reason,
            error,
        }
        .emit();
        // Each occurrence is its own dead letter (the same garbage twice is two problems): the
        // origin numbers the connection's bad frames.
        session.bad_frames += 1;
        let origin = format!(
            "ws {} after sequence {}, bad frame {}",
            session.connection_id, session.sequence, session.bad_frames
        );
        self.shared
            .publisher
            .publish(Outgoing::Dead(DeadLetter::from_upstream(
                SOURCE,
                origin,
                format!("{reason}: {error}"),
                payload.into_bytes(),
                now_ms(),
            )))
            .await
    }

    pub(super) fn saw_upstream_time(&mut self, timestamp_ms: i64) {
        let previous = self
            .clock
            .last_upstream_ms
            .fetch_max(timestamp_ms, Ordering::Relaxed);
        if timestamp_ms > previous {
            self.shared
                .latest_upstream_ms
                .fetch_max(timestamp_ms, Ordering::Relaxed);
        }
    }

    /// Where a gap of this shard starts (see [`gap_start_ms`]).
    pub(super) fn gap_start_ms(&self) -> i64 {
        gap_start_ms(&self.shared, &self.clock)
    }
}
