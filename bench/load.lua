-- wrk script: every request picks a random seeded user (tok-N) and one of their session
-- cookies (cookie-N-K), as bench/make_seed.py wrote them. BENCH_MODE picks the request.
local users = tonumber(os.getenv("BENCH_USERS"))
local per_user = tonumber(os.getenv("BENCH_SESSIONS"))
local mode = os.getenv("BENCH_MODE")
local password_users = tonumber(os.getenv("BENCH_PASSWORD_USERS") or "0")
-- get-hot: requests go to the first BENCH_HOT sessions only (users 0.. of bench/make_seed.py),
-- so at about BENCH_HOT requests a second each of them is used about every second.
local hot = tonumber(os.getenv("BENCH_HOT") or "2000")
local path = "/api/user/sessions"
local threads_made, next_user = 0, 0

function setup(thread)
  -- Runs in the main Lua state; thread:set gives each thread's own state a global.
  thread:set("thread_index", threads_made)
  threads_made = threads_made + 1
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_index)
  next_user = tonumber(os.getenv("BENCH_START") or "0") + thread_index
end

local function cookie(user, k)
  return "zipline_token=cookie-" .. user .. "-" .. k
end

request = function()
  if mode == "get" then
    local user = math.random(0, users - 1)
    return wrk.format("GET", path, {["Authorization"] = "tok-" .. user,
                                    ["Cookie"] = cookie(user, math.random(0, per_user - 1))})
  elseif mode == "get-hot" then
    local session = math.random(0, hot - 1)
    local user = math.floor(session / per_user)
    return wrk.format("GET", path, {["Authorization"] = "tok-" .. user,
                                    ["Cookie"] = cookie(user, session % per_user)})
  elseif mode == "verify" then
    local user = math.random(0, users - 1)
    return wrk.format("GET", "/api/auth/verify", {["Authorization"] = "tok-" .. user,
                                                  ["Cookie"] = cookie(user, math.random(0, per_user - 1))})
  elseif mode == "get-token" then
    return wrk.format("GET", path, {["Authorization"] = "tok-" .. math.random(0, users - 1)})
  elseif mode == "delete" then
    -- Each of the 2 threads walks its own users, revoking sessions 1..K-1 from session 0:
    -- no session is revoked twice.
    local user = next_user % users
    local k = 1 + math.floor(next_user / users) % (per_user - 1)
    next_user = next_user + 2
    return wrk.format("DELETE", path, {["Authorization"] = "tok-" .. user, ["Cookie"] = cookie(user, 0),
                                       ["Content-Type"] = "application/json"},
                      '{"sessionId": "sess_' .. user .. "_" .. k .. '"}')
  elseif mode == "login" then
    local user = math.random(0, password_users - 1)
    return wrk.format("POST", "/api/auth/login", {["Content-Type"] = "application/json"},
                      '{"username": "user' .. user .. '", "password": "password-' .. user .. '"}')
  end
end
