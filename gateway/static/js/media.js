// Images in messages (docs/protocol.md, "Media").
//
// Upload: POST v1/media declares the file, then the browser POSTs it as multipart/form-data
// (the fields given, then `file`) straight to the storage URL, which is not this server's when
// media live on S3. Display: an <img> cannot carry a Bearer token, so GET v1/media/{id}/url
// first gives a short-lived URL, reused until shortly before it expires.

const EARLY_MS = 30_000;

export async function upload(api, file) {
  const declared = await api.post("v1/media", {
    filename: file.name || "image", content_type: file.type || "application/octet-stream", size: file.size,
  });
  const form = new FormData();
  for (const [name, value] of Object.entries(declared.upload.fields || {})) form.append(name, value);
  form.append("file", file);
  let response;
  try {
    response = await fetch(declared.upload.url, {method: "POST", body: form});
  } catch {
    throw new Error("the upload did not reach storage");
  }
  if (!response.ok) throw new Error(`storage refused the upload (HTTP ${response.status})`);
  return declared.media_id;
}

export class MediaUrls {
  constructor(api) {
    this.api = api;
    this.cache = new Map();     // media_id -> {url, expires}
  }

  async url(mediaId) {
    const hit = this.cache.get(mediaId);
    if (hit && hit.expires - Date.now() > EARLY_MS) return hit.url;
    const got = await this.api.get(`v1/media/${encodeURIComponent(mediaId)}/url`);
    this.cache.set(mediaId, {url: got.url, expires: Date.parse(got.expires_at) || Date.now() + 60_000});
    return got.url;
  }

  forget(mediaId) {
    this.cache.delete(mediaId);
  }
}
