// zipline-sessions in a Node test suite (node --test), on the same zipline-sessions command as the
// pytest plugin: started once on port 0 in a process group of its own (it stops by itself if this
// process dies), reset to ../seed.json before each test, stopped and its temporary folder removed
// at the end. ZIPLINE_SESSIONS_COMMAND names the command when it is not on PATH.
import { after, before, beforeEach, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

const command = process.env.ZIPLINE_SESSIONS_COMMAND ?? "zipline-sessions";
const seed = readFileSync(new URL("../seed.json", import.meta.url), "utf8");
const work = mkdtempSync(join(tmpdir(), "zipline-sessions-"));
let server, base;

const control = (path, body) => fetch(`${base}/__test__${path}`, { method: "POST",
  headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

before(async () => {
  const ready = join(work, "ready");
  server = spawn(command, ["serve"], { detached: true, stdio: ["ignore", "ignore", "inherit"], env: { ...process.env,
    SESSIONS_BIND: "127.0.0.1:0", SESSIONS_READY_FILE: ready, SESSIONS_TEST_CONTROL: "true",
    SESSIONS_DATABASE_URL: `sqlite:///${join(work, "sessions.db")}`, SESSIONS_WORKERS: "1",
    SESSIONS_ACCESS_LOG: "off", SESSIONS_LOGIN_RATE_LIMIT: "off", SESSIONS_PARENT_PID: String(process.pid) } });
  const exited = new Promise((resolve) => server.once("exit", resolve));
  server.exited = exited;
  while (!existsSync(ready) || !readFileSync(ready, "utf8").endsWith("\n")) {
    assert.equal(server.exitCode, null, "zipline-sessions exited");
    await sleep(10);
  }
  base = readFileSync(ready, "utf8").trim();
});

after(async () => {
  if (server?.exitCode === null) {
    process.kill(server.pid, "SIGTERM"); // the service, which stops its workers
    const killed = setTimeout(() => process.kill(-server.pid, "SIGKILL"), 30_000); // its whole group, if stuck
    await server.exited;
    clearTimeout(killed);
  }
  rmSync(work, { recursive: true, force: true });
});

beforeEach(() => fetch(`${base}/__test__/reset`, { method: "POST", headers: { "Content-Type": "application/json" },
  body: seed }));

test("maya's live sessions, and an outage the client must survive", async () => {
  const list = await fetch(`${base}/api/user/sessions`, { headers: { Authorization: "tok-maya" } });
  assert.deepEqual((await list.json()).other.map((s) => s.id), ["sess_maya_laptop", "sess_maya_phone"]);
  await control("/faults", { route: "GET /api/user/sessions", status: 503, times: 1 });
  assert.equal((await fetch(`${base}/api/user/sessions`, { headers: { Authorization: "tok-maya" } })).status, 503);
});

test("a login expires after seven days of the service's time", async () => {
  await control("/clock", { set: "2027-01-01T09:00:00Z" });
  const login = await fetch(`${base}/api/auth/login`, { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: "theo", password: "hunter2-but-longer" }) });
  const cookie = login.headers.get("set-cookie").split(";")[0];
  assert.equal((await fetch(`${base}/api/user/sessions`, { headers: { cookie } })).status, 200);
  await control("/clock", { advance: 7 * 24 * 3600 });
  assert.equal((await fetch(`${base}/api/user/sessions`, { headers: { cookie } })).status, 401);
});
