// lmukws browser demo: AudioWorklet that hands the microphone to the page in small blocks.
//
// Runs on the audio rendering thread at the AudioContext's rate (the device's rate). It takes
// channel 0 of its input, collects `blockSize` samples (about 40 ms) and posts each block to the
// page as a transferable Float32Array together with the audio-clock time of its last sample.
// No resampling here: the page announces the context's rate in `start` and the server resamples.

class MicBlockProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const ms = (options && options.processorOptions && options.processorOptions.blockMs) || 40;
    this.blockSize = Math.max(128, Math.round((sampleRate * ms) / 1000));
    this.buffer = new Float32Array(this.blockSize);
    this.filled = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    const input = inputs[0];
    const channel = input && input.length > 0 ? input[0] : null;
    if (channel) {
      let offset = 0;
      while (offset < channel.length) {
        const n = Math.min(channel.length - offset, this.blockSize - this.filled);
        this.buffer.set(channel.subarray(offset, offset + n), this.filled);
        this.filled += n;
        offset += n;
        if (this.filled === this.blockSize) {
          const block = this.buffer;
          this.port.postMessage({ samples: block, time: currentTime }, [block.buffer]);
          this.buffer = new Float32Array(this.blockSize);
          this.filled = 0;
        }
      }
    }
    return this.running;
  }
}

registerProcessor("lmukws-mic", MicBlockProcessor);
