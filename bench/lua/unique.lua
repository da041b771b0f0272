-- Cache-miss load: every request a different applicant, so no response cache can answer it.
--   wrk -s bench/lua/unique.lua URL -- BODY_FILE OFFSET
-- BODY_FILE holds one request in the stack's format with the placeholder @INCOME@; each
-- request puts 30000 + (OFFSET + n) / 100 there, n counting this thread's requests. The
-- harness gives each run its own OFFSET so repeated runs never resend an earlier instance.

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

local counter = 0
local head, tail
local headers = { ["Content-Type"] = "application/json" }
local next_thread = 0

function setup(thread)
  -- Threads have separate Lua states: give each its own stride so their counters never meet.
  thread:set("thread_index", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  local template = read_file(assert(args[1], "usage: -- BODY_FILE OFFSET"))
  local at = assert(template:find("@INCOME@", 1, true), "BODY_FILE has no @INCOME@")
  head = template:sub(1, at - 1)
  tail = template:sub(at + #"@INCOME@")
  counter = tonumber(args[2] or "0") + (thread_index or 0) * 100000000
end

function request()
  counter = counter + 1
  local body = head .. string.format("%.2f", 30000 + counter / 100) .. tail
  return wrk.format("POST", nil, headers, body)
end
