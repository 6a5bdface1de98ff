// Uploads one file with tus-js-client on Node; prints {"url", "fileId", "progress"} as JSON.
// Usage: node tus_node_upload.cjs ENDPOINT TOKEN PATH CHUNK_SIZE  (NODE_PATH finds the client)
const fs = require("fs");
const tus = require("tus-js-client");

const [endpoint, token, path, chunkSize] = process.argv.slice(2);
const size = fs.statSync(path).size;
const progress = [];
const upload = new tus.Upload(fs.createReadStream(path), {
  endpoint,
  chunkSize: Number(chunkSize),
  uploadSize: size,
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: "from-node.bin", filetype: "application/octet-stream" },
  retryDelays: [0, 1000, 3000],
  onChunkComplete(chunk, accepted) {
    progress.push(accepted);
  },
  onSuccess(payload) {
    const response = payload.lastResponse;
    console.log(JSON.stringify({ url: upload.url, fileId: response.getHeader("X-File-Id"), progress }));
  },
  onError(error) {
    console.error(String(error));
    process.exit(1);
  },
});
upload.start();
