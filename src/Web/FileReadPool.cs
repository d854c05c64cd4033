using System.Collections.Concurrent;
using IoMux.Loop;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Web;

/// <summary>Blocking file reads off the loop (nginx's thread pools): a few dedicated threads take reads from a
/// bounded queue and the completions run on the loop thread. A full queue refuses new reads
/// (<see cref="TryRead"/> returns false), which is the back-pressure: the caller stops taking new requests
/// instead of queueing without bound behind a slow disk.</summary>
public sealed class FileReadPool : IDisposable
{
    private readonly struct Job(SafeFileHandle file, long offset, Memory<byte> buffer, Action<int, Exception?> completion)
    {
        public readonly SafeFileHandle File = file;
        public readonly long Offset = offset;
        public readonly Memory<byte> Buffer = buffer;
        public readonly Action<int, Exception?> Completion = completion;
    }

    private readonly EventLoop _loop;
    private readonly BlockingCollection<Job> _queue;
    private readonly Thread[] _threads;
    private int _inFlight;
    private int _disposed;

    /// <summary>A pool of <paramref name="threads"/> readers completing on <paramref name="loop"/>, holding at most
    /// <paramref name="queueCapacity"/> reads not yet started.</summary>
    public FileReadPool(EventLoop loop, int threads = 2, int queueCapacity = 64)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(queueCapacity, 1);
        _loop = loop;
        _queue = new BlockingCollection<Job>(new ConcurrentQueue<Job>(), queueCapacity);
        _threads = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            _threads[i] = new Thread(Work) { IsBackground = true, Name = $"IoMux file read {i}" };
            _threads[i].Start();
        }
    }

    /// <summary>The blocking read (pread(2) through RandomAccess); tests put a read that blocks on demand here,
    /// standing in for a slow disk.</summary>
    internal Func<SafeFileHandle, Memory<byte>, long, int> Reader { get; set; } =
        static (file, buffer, offset) => RandomAccess.Read(file, buffer.Span, offset);

    /// <summary>Reads waiting for a thread.</summary>
    internal int Waiting => _queue.Count;

    /// <summary>Reads queued or running now.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Queues a read of up to <paramref name="buffer"/>'s length at <paramref name="offset"/>.
    /// <paramref name="completion"/> runs on the loop thread with the byte count (0 at end of file) or the
    /// exception the read threw. Returns false, queueing nothing, when the queue is full or the pool disposed.</summary>
    public bool TryRead(SafeFileHandle file, long offset, Memory<byte> buffer, Action<int, Exception?> completion)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(completion);
        Interlocked.Increment(ref _inFlight);
        bool queued;
        try
        {
            queued = !_queue.IsAddingCompleted && _queue.TryAdd(new Job(file, offset, buffer, completion));
        }
        catch (InvalidOperationException)
        {
            queued = false; // disposed between the check and the add
        }
        if (!queued)
            Interlocked.Decrement(ref _inFlight);
        return queued;
    }

    private void Work()
    {
        foreach (var job in _queue.GetConsumingEnumerable())
        {
            int bytes = 0;
            Exception? error = null;
            try
            {
                bytes = Reader(job.File, job.Buffer, job.Offset);
            }
            catch (Exception e)
            {
                error = e;
            }
            var completion = job.Completion;
            _loop.Post(() =>
            {
                Interlocked.Decrement(ref _inFlight);
                completion(bytes, error);
            });
        }
    }

    /// <summary>How long <see cref="Dispose"/> waits for the reads queued and running to finish.</summary>
    internal TimeSpan DisposeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Stops taking reads; the ones already queued still run and complete; waits up to 10 seconds for the
    /// threads. A read that the disk has not answered by then (a hung NFS mount, a dead device) is abandoned
    /// rather than waited for forever: Dispose returns, the thread stays (a background thread, it cannot keep
    /// the process alive) and ends when its read returns, and the completions it then posts still run if the loop
    /// does. Until then the caller must not reuse the buffers of reads whose completion has not run.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        _queue.CompleteAdding();
        var deadline = Environment.TickCount64 + (long)DisposeTimeout.TotalMilliseconds;
        bool allEnded = true;
        foreach (var thread in _threads)
            allEnded &= thread.Join(TimeSpan.FromMilliseconds(Math.Max(0, deadline - Environment.TickCount64)));
        // A stuck worker still enumerates the queue; disposing it under that thread would throw there.
        if (allEnded)
            _queue.Dispose();
    }
}
