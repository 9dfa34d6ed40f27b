// k6 1.1.0's gRPC client making unary calls back to back (bench/grpc.sh):
// the seed's GetPrediction against the demo server. ADDR (host:port),
// PROTO_DIR, VUS and DURATION come from the environment.
import grpc from 'k6/net/grpc';

const client = new grpc.Client();
client.load([__ENV.PROTO_DIR], 'categorization.proto');

export const options = { vus: Number(__ENV.VUS), duration: __ENV.DURATION };

export default function () {
  if (__ITER === 0) {
    client.connect(__ENV.ADDR, { plaintext: true });
  }
  client.invoke('categorization.TextCategorization/GetPrediction', { text: 'hello' });
}
