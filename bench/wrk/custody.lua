-- The police custody check on random children.
-- wrk -t2 -c32 -d20s -s bench/wrk/custody.lua http://127.0.0.1:PORT -- IDS_FILE TOKEN [PURPOSE]
-- IDS_FILE holds one child UUID a line.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local ids = {}
local count = 0
local head, tail

function init(args)
   math.randomseed(thread_seed or os.time())
   for line in io.lines(args[1]) do
      if #line > 0 then ids[#ids + 1] = line end
   end
   count = #ids
   assert(count > 0, "no ids in " .. args[1])
   wrk.headers["Authorization"] = "Bearer " .. args[2]
   wrk.headers["X-Purpose-Of-Use"] = args[3] or "child_protection"
   -- Format the request once around a placeholder id and split it there: each request is then
   -- one concatenation, as cheap for wrk as the bare-FastAPI ceiling's fixed request, so the
   -- load generator takes no more of the shared cores from one server than from the other.
   local template = wrk.format("GET", "/v1/children/{id}/custody")
   local at = template:find("{id}", 1, true)
   head, tail = template:sub(1, at - 1), template:sub(at + 4)
end

function request()
   return head .. ids[math.random(count)] .. tail
end
