-- A GET of the URL's path with a bearer token and X-Purpose-Of-Use (case reads, the timeline).
-- wrk -t2 -c32 -d15s -s bench/wrk/get_purpose.lua http://127.0.0.1:PORT/v1/referrals -- TOKEN PURPOSE

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local req

function init(args)
   wrk.headers["Authorization"] = "Bearer " .. args[1]
   wrk.headers["X-Purpose-Of-Use"] = args[2] or "child_protection"
   req = wrk.format("GET")
end

function request()
   return req
end
