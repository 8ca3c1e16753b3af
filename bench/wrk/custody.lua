-- The police custody check on random children.
-- wrk -t2 -c32 -d20s -s bench/wrk/custody.lua http://127.0.0.1:PORT -- IDS_FILE TOKEN [PURPOSE]
-- IDS_FILE holds one child UUID a line.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local ids = {}

function init(args)
   math.randomseed(thread_seed or os.time())
   for line in io.lines(args[1]) do
      if #line > 0 then ids[#ids + 1] = line end
   end
   assert(#ids > 0, "no ids in " .. args[1])
   wrk.headers["Authorization"] = "Bearer " .. args[2]
   wrk.headers["X-Purpose-Of-Use"] = args[3] or "child_protection"
end

function request()
   return wrk.format("GET", "/v1/children/" .. ids[math.random(#ids)] .. "/custody")
end
