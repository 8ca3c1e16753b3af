-- The token endpoint: client credentials with HTTP Basic.
-- wrk -t2 -c32 -d10s -s bench/wrk/token.lua http://127.0.0.1:PORT/oauth/token -- BASIC_B64

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local req

function init(args)
   wrk.headers["Authorization"] = "Basic " .. args[1]
   wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
   req = wrk.format("POST", nil, nil, "grant_type=client_credentials")
end

function request()
   return req
end
