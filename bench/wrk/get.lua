-- A GET of the URL's path, with an optional bearer token (bare FastAPI, /v1/me).
-- wrk -t2 -c32 -d10s -s bench/wrk/get.lua http://127.0.0.1:PORT/v1/me -- [TOKEN]

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local req

function init(args)
   if args[1] and #args[1] > 0 then
      wrk.headers["Authorization"] = "Bearer " .. args[1]
   end
   req = wrk.format("GET")
end

function request()
   return req
end
