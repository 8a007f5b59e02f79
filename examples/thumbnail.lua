-- thumbnail: the helper module of seed 1.6 (gopl.io/ch8/thumbnail). image_file(path) writes a
-- thumbnail of the image beside it, NAME.thumb.jpg for NAME.EXT, scaled down to fit 128x128
-- (never enlarged), by running ImageMagick's `convert` through csp.exec: the goroutine parks
-- while the process works, so thumbnails made from several goroutines are made in parallel
-- processes, on every core. Returns the new file's path, or nil and an error that carries
-- ImageMagick's message (a missing or unreadable file, not an image, convert not installed).
--
--   local thumbnail = require "thumbnail"
--   local thumb, err = thumbnail.image_file("photo.jpg")   --> "photo.thumb.jpg"
local csp = require "csp"

local M = {}

M.SIZE = 128

-- The thumbnail's path for an image: the extension replaced by .thumb.jpg.
function M.thumb_name(path)
  local base = path:match("^(.*)%.[^./]*$") or path
  return base .. ".thumb.jpg"
end

function M.image_file(path)
  if type(path) ~= "string" then
    error(("bad argument #1 to 'image_file' (string expected, got %s)"):format(type(path)), 2)
  end
  local thumb = M.thumb_name(path)
  -- One thread per process: the parallelism comes from running several processes at once.
  -- "WxH>": only shrink, keeping the aspect ratio.
  local res, err = csp.exec("convert", { "-limit", "thread", "1", path,
    "-thumbnail", ("%dx%d>"):format(M.SIZE, M.SIZE), "-strip", thumb })
  if not res then return nil, ("thumbnail %s: %s"):format(path, err) end
  if res.status ~= 0 then
    local msg = res.stderr:match("^[^\n]+") or ("convert exited with status " .. res.status)
    return nil, ("thumbnail %s: %s"):format(path, msg)
  end
  return thumb
end

return M
