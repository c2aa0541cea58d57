// Symbl's official JavaScript SDK (@symblai/symbl-js), unchanged, streaming a raw recording to a Symbl-compatible
// host: the engine or Parley's ingest. Usage: node stream.js BASE_URL ACCESS_TOKEN PCM_FILE [SPEED]
// PCM_FILE holds 16-bit mono little-endian samples at 16 kHz. Every callback the SDK makes is printed as one JSON
// line ({"event": ..., "data": ...}) for the Python test that runs this to read.
const fs = require("fs");
const { sdk } = require("@symblai/symbl-js");

const [basePath, accessToken, pcmFile, speedArg] = process.argv.slice(2);
const speed = Number(speedArg || "1");
const print = (event, data) => process.stdout.write(JSON.stringify({ event, data }) + "\n");

async function main() {
  await sdk.init({ accessToken, basePath });
  const connection = await sdk.startRealtimeRequest({
    id: `js-sdk-${Date.now()}`,
    insightTypes: ["question", "action_item", "follow_up"],
    config: { meetingTitle: "JS SDK stream", confidenceThreshold: 0.5, languageCode: "en-US", sampleRateHertz: 16000 },
    speaker: { userId: "sara@example.com", name: "Sara" },
    handlers: {
      onSpeechDetected: (data) => print("speech", data),
      onMessageResponse: (data) => print("messages", data),
      onInsightResponse: (data) => print("insights", data),
      onTopicResponse: (data) => print("topics", data),
    },
  });
  print("started", { conversationId: connection.conversationId });
  const audio = fs.readFileSync(pcmFile);
  const chunk = 3200; // 100 ms at 16 kHz
  for (let offset = 0; offset < audio.length; offset += chunk) {
    connection.sendAudio(audio.subarray(offset, offset + chunk));
    await new Promise((resolve) => setTimeout(resolve, 100 / speed));
  }
  const completed = await connection.stop();
  print("stopped", completed);
  process.exit(0);
}

main().catch((error) => {
  print("error", { message: String(error && error.message ? error.message : error) });
  process.exit(1);
});
