#!/usr/bin/env python3
"""The store benchmark's searches on the same data in SQLite: FTS5 and the original's LIKE '%q%'.

    sqlite_compare.py EXPORT.jsonl COMMON RARE "TWO WORDS" PREFIX CHAT_JID

Loads the `message` records of a `whatsapp-mcp-stream export` into an in-memory-backed temp
SQLite database (a messages table with an index on (chat, timestamp), plus an FTS5 table), then
prints name=value lines: p50/p99 in ms of newest-20 searches, as the original ran them
(ORDER BY timestamp DESC LIMIT 20), with and without a chat filter, and the bytes per message.
"""
import json
import os
import sqlite3
import sys
import tempfile
import time


def main() -> None:
    export, common, rare, two, prefix, chat = sys.argv[1:7]
    fd, path = tempfile.mkstemp(suffix=".sqlite")
    os.close(fd)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE messages (id TEXT PRIMARY KEY, chat TEXT, sender TEXT, ts INTEGER, body TEXT)")
    db.execute("CREATE INDEX idx_messages_chat_ts ON messages(chat, ts DESC)")
    db.execute("CREATE VIRTUAL TABLE fts USING fts5(body, content='messages', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')")
    n = 0
    batch = []
    with open(export, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("kind") != "message":
                continue
            batch.append((rec["chat"] + ":" + rec["id"], rec["chat"], rec.get("from", ""), rec["timestamp"], rec.get("body", "")))
            n += 1
            if len(batch) >= 50_000:
                db.executemany("INSERT OR IGNORE INTO messages VALUES (?,?,?,?,?)", batch)
                batch.clear()
    if batch:
        db.executemany("INSERT OR IGNORE INTO messages VALUES (?,?,?,?,?)", batch)
    db.execute("INSERT INTO fts(rowid, body) SELECT rowid, body FROM messages")
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    print(f"sqlite_messages={n}")
    print(f"sqlite_fts5_db_bytes_per_message={os.path.getsize(path) / max(n, 1):.0f}")

    def timed(name: str, sql: str, params: tuple, runs: int) -> None:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            db.execute(sql, params).fetchall()
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        p50 = times[len(times) // 2]
        p99 = times[min(len(times) - 1, round((len(times) - 1) * 0.99))]
        print(f"{name}_p50_ms={p50:.3f}")
        print(f"{name}_p99_ms={p99:.3f}")

    fts = "SELECT m.id FROM fts JOIN messages m ON m.rowid = fts.rowid WHERE fts MATCH ? ORDER BY m.ts DESC LIMIT 20"
    fts_chat = "SELECT m.id FROM fts JOIN messages m ON m.rowid = fts.rowid WHERE fts MATCH ? AND m.chat = ? ORDER BY m.ts DESC LIMIT 20"
    like = "SELECT id FROM messages WHERE body LIKE ? ORDER BY ts DESC LIMIT 20"
    like_chat = "SELECT id FROM messages WHERE chat = ? AND body LIKE ? ORDER BY ts DESC LIMIT 20"
    queries = {"common_word": common, "rare_word": rare, "two_words": two, "prefix": prefix}
    for name, q in queries.items():
        match = " ".join(f'"{w}"' for w in q.split()) + ("*" if name == "prefix" else "")
        timed(f"sqlite_fts5_{name}", fts, (match,), 50)
        timed(f"sqlite_fts5_{name}_in_chat", fts_chat, (match, chat), 50)
        timed(f"sqlite_like_{name}", like, (f"%{q}%",), 10)
        timed(f"sqlite_like_{name}_in_chat", like_chat, (chat, f"%{q}%"), 10)
    db.close()
    os.remove(path)
    for extra in (path + "-wal", path + "-shm"):
        if os.path.exists(extra):
            os.remove(extra)


if __name__ == "__main__":
    main()
