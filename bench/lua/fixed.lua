-- Cache-hit load: the same POST body on every request.
--   wrk -s bench/lua/fixed.lua URL -- BODY_FILE
-- BODY_FILE holds one request in the stack's format with the placeholder @INCOME@ where the
-- applicant's income goes; here it is the example applicant's income on every request.

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

function init(args)
  local template = read_file(assert(args[1], "usage: -- BODY_FILE"))
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.body = template:gsub("@INCOME@", "52000.0")
end
