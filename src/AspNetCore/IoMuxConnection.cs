using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Threading.Tasks.Sources;
using IoMux.Interop;
using IoMux.Loop;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace IoMux.AspNetCore;

/// <summary>
/// One accepted connection, pumped by the loop that accepted it. Receiving runs on the loop: a readable socket is
/// read straight into the input pipe's memory and flushed; when the application has not consumed
/// <see cref="IoMuxTransportOptions.MaxReadBufferSize"/> the loop stops watching the socket for reading until the
/// flush completes (back-pressure reaches the peer through TCP). Sending is an async loop over the output pipe that
/// writes its segments with one writev(2) and, on would-block, asks the loop to watch for writability. Peer FIN
/// completes the input; the application completing its output sends FIN (shutdown(SHUT_WR)).
/// </summary>
internal sealed partial class IoMuxConnection : ConnectionContext,
    IConnectionIdFeature, IConnectionTransportFeature, IConnectionItemsFeature, IConnectionLifetimeFeature,
    IConnectionEndPointFeature, IMemoryPoolFeature, IValueTaskSource<bool>
{
    private const int MaxSegmentsPerWrite = 64;
    private const int SHUT_WR = 1, SHUT_RDWR = 2;

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [LibraryImport("libc", SetLastError = true)] private static unsafe partial nint writev(int fd, IoVec* vectors, int count);
    [LibraryImport("libc", SetLastError = true)] private static partial int shutdown(int fd, int how);

    private readonly Socket _socket;
    private readonly int _fd;
    private readonly LoopThread _loop;
    private readonly PinnedBlockMemoryPool _pool;
    private readonly Pipe _input, _output;
    private readonly CancellationTokenSource _closed = new();
    private readonly TaskCompletionSource _receiveDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Action _resumeReading, _watchWritable;
    private ManualResetValueTaskSourceCore<bool> _writable; // completed by the loop when the socket can take bytes
    private IoSource? _source;
    private Task _sending = Task.CompletedTask;
    private bool _readPaused, _readDone, _wantWrite;
    private volatile bool _aborted;
    private IDictionary<object, object?>? _items;
    private int _disposed;

    public IoMuxConnection(Socket socket, LoopThread loop, IoMuxTransportOptions options, PinnedBlockMemoryPool pool, string id)
    {
        _socket = socket;
        _fd = (int)socket.Handle;
        _loop = loop;
        _pool = pool;
        ConnectionId = id;
        LocalEndPoint = socket.LocalEndPoint;
        RemoteEndPoint = socket.RemoteEndPoint;
        var appScheduler = options.Scheduling == ApplicationScheduling.Inline ? PipeScheduler.Inline : PipeScheduler.ThreadPool;
        long read = options.MaxReadBufferSize ?? 0, write = options.MaxWriteBufferSize ?? 0;
        _input = new Pipe(new PipeOptions(pool, readerScheduler: appScheduler, writerScheduler: PipeScheduler.Inline,
            pauseWriterThreshold: read, resumeWriterThreshold: read / 2, useSynchronizationContext: false));
        _output = new Pipe(new PipeOptions(pool, readerScheduler: loop.Scheduler, writerScheduler: appScheduler,
            pauseWriterThreshold: write, resumeWriterThreshold: write / 2, useSynchronizationContext: false));
        Transport = new DuplexPipe(_input.Reader, _output.Writer);
        _writable.RunContinuationsAsynchronously = false;
        _resumeReading = ResumeReading;
        _watchWritable = WatchWritable;
        Features = new FeatureCollection();
        Features.Set<IConnectionIdFeature>(this);
        Features.Set<IConnectionTransportFeature>(this);
        Features.Set<IConnectionItemsFeature>(this);
        Features.Set<IConnectionLifetimeFeature>(this);
        Features.Set<IConnectionEndPointFeature>(this);
        Features.Set<IMemoryPoolFeature>(this);
    }

    public override string ConnectionId { get; set; }
    public override IFeatureCollection Features { get; }
    public override IDictionary<object, object?> Items { get => _items ??= new ConnectionItems(); set => _items = value; }
    public override IDuplexPipe Transport { get; set; }
    public override CancellationToken ConnectionClosed { get => _closed.Token; set => throw new NotSupportedException(); }
    public override EndPoint? LocalEndPoint { get; set; }
    public override EndPoint? RemoteEndPoint { get; set; }
    public MemoryPool<byte> MemoryPool => _pool;

    /// <summary>On the loop thread: starts watching the socket and the send loop.</summary>
    public void Start()
    {
        _source = _loop.Loop.AddIo(_fd, Interest.Readable, OnReady, TriggerMode.Level, description: ConnectionId);
        _sending = SendLoopAsync();
        _ = CloseWhenDoneAsync();
    }

    private void OnReady(IoSource source, Readiness readiness)
    {
        if (_wantWrite && (readiness & (Readiness.Writable | Readiness.Error | Readiness.Hangup)) != 0)
        {
            _wantWrite = false;
            UpdateInterest();
            _writable.SetResult(true);
        }
        if (!_readPaused && !_readDone && (readiness & (Readiness.Readable | Readiness.ReadHangup | Readiness.Hangup | Readiness.Error)) != 0)
            Receive();
    }

    /// <summary>Reads into the input pipe until would-block, end of stream, an error or back-pressure.</summary>
    private unsafe void Receive()
    {
        var writer = _input.Writer;
        for (int reads = 0; reads < 16; reads++)
        {
            var memory = writer.GetMemory(PinnedBlockMemoryPool.BlockSize);
            nint n;
            fixed (byte* p = memory.Span)
                n = LibC.read(_fd, p, (nuint)memory.Length);
            if (n > 0)
            {
                writer.Advance((int)n);
                var flush = writer.FlushAsync();
                if (!flush.IsCompleted)
                {
                    // The application has not consumed MaxReadBufferSize yet: stop reading until it has.
                    _readPaused = true;
                    UpdateInterest();
                    _ = ResumeAfterFlushAsync(flush);
                    return;
                }
                if (flush.Result.IsCompleted)
                {
                    EndReceive(null); // the application stopped reading
                    return;
                }
                if (n < memory.Length)
                    return; // most likely drained: the next readiness brings the rest
                continue;
            }
            if (n == 0)
            {
                EndReceive(null); // the peer's FIN: the application's reader sees the end
                return;
            }
            int errno = Errno.Last;
            if (errno == Errno.EAGAIN || errno == Errno.EINTR)
                return;
            EndReceive(errno == Errno.ECONNRESET
                ? new ConnectionResetException($"{ConnectionId}: the peer reset the connection", new PosixException("read", errno))
                : new IOException($"{ConnectionId}: read failed", new PosixException("read", errno)));
            return;
        }
    }

    private async Task ResumeAfterFlushAsync(ValueTask<FlushResult> flush)
    {
        FlushResult result;
        try
        {
            result = await flush.ConfigureAwait(false);
        }
        catch
        {
            result = new FlushResult(isCanceled: false, isCompleted: true);
        }
        if (result.IsCompleted)
            _loop.Run(() => EndReceive(null));
        else
            _loop.Run(_resumeReading);
    }

    private void ResumeReading()
    {
        if (_readDone)
            return;
        _readPaused = false;
        UpdateInterest();
    }

    /// <summary>On the loop thread: the receive direction is over (end of stream, error, abort).</summary>
    private void EndReceive(Exception? error)
    {
        if (_readDone)
            return;
        _readDone = true;
        _input.Writer.Complete(error);
        UpdateInterest();
        _receiveDone.TrySetResult();
    }

    private void UpdateInterest()
    {
        var interest = (_readPaused || _readDone ? Interest.None : Interest.Readable) | (_wantWrite ? Interest.Writable : Interest.None);
        if (_source is { } source && source.Interest != interest)
            source.SetInterest(interest);
    }

    /// <summary>On the loop thread: the sender hit would-block and waits for writability.</summary>
    private void WatchWritable()
    {
        if (_source is null || _aborted)
        {
            _writable.SetResult(false);
            return;
        }
        _wantWrite = true;
        UpdateInterest();
    }

    private async Task SendLoopAsync()
    {
        var reader = _output.Reader;
        Exception? error = null;
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync().ConfigureAwait(false);
                var buffer = result.Buffer;
                if (result.IsCanceled || _aborted)
                    break;
                bool ok = true;
                while (!buffer.IsEmpty)
                {
                    long sent = Send(buffer, out int errno);
                    if (sent > 0)
                    {
                        buffer = buffer.Slice(sent);
                        continue;
                    }
                    if (errno == Errno.EAGAIN)
                    {
                        _writable.Reset();
                        _loop.Run(_watchWritable);
                        if (!await new ValueTask<bool>(this, _writable.Version).ConfigureAwait(false))
                        {
                            ok = false;
                            break;
                        }
                        continue;
                    }
                    if (errno == Errno.EINTR)
                        continue;
                    // EPIPE, ECONNRESET: the peer is gone; what is left cannot be sent.
                    ok = false;
                    error = new ConnectionResetException($"{ConnectionId}: send failed", new PosixException("writev", errno));
                    break;
                }
                reader.AdvanceTo(ok ? buffer.End : result.Buffer.End);
                if (!ok)
                    break;
                if (result.IsCompleted)
                {
                    shutdown(_fd, SHUT_WR); // the application completed its output: FIN
                    break;
                }
            }
        }
        catch (Exception e)
        {
            error = e;
        }
        reader.Complete(error);
        if (error is not null)
            _loop.Run(() => EndReceive(new ConnectionAbortedException("the send side failed", error)));
    }

    /// <summary>One writev(2) over up to 64 segments; the bytes sent, or -1 with errno.</summary>
    private unsafe long Send(in ReadOnlySequence<byte> buffer, out int errno)
    {
        IoVec* vectors = stackalloc IoVec[MaxSegmentsPerWrite];
        int count = 0;
        var pins = new PinScope();
        try
        {
            foreach (var segment in buffer)
            {
                if (count == MaxSegmentsPerWrite)
                    break;
                if (segment.IsEmpty)
                    continue;
                vectors[count].Base = pins.Pin(segment);
                vectors[count].Length = (nuint)segment.Length;
                count++;
            }
            nint n = writev(_fd, vectors, count);
            errno = n < 0 ? Errno.Last : 0;
            return n;
        }
        finally
        {
            pins.Dispose();
        }
    }

    /// <summary>Pins segments for one writev: the pool's blocks are pinned already (free); others (a large
    /// segment from the shared array pool) get a handle for the call.</summary>
    private unsafe struct PinScope : IDisposable
    {
        private MemoryHandle[]? _handles;
        private int _count;

        public void* Pin(ReadOnlyMemory<byte> segment)
        {
            if (MemoryMarshal.TryGetMemoryManager(segment, out PinnedBlockMemoryPool.Block? block, out int start, out _))
                return block.Pointer + start;
            _handles ??= new MemoryHandle[MaxSegmentsPerWrite];
            var handle = segment.Pin();
            _handles[_count++] = handle;
            return handle.Pointer;
        }

        public void Dispose()
        {
            for (int i = 0; i < _count; i++)
                _handles![i].Dispose();
        }
    }

    /// <summary>After both directions ended (or an abort): the lifetime token fires.</summary>
    private async Task CloseWhenDoneAsync()
    {
        await _receiveDone.Task.ConfigureAwait(false);
        await _sending.ConfigureAwait(false);
        _closed.Cancel();
    }

    public override void Abort(ConnectionAbortedException abortReason)
    {
        _aborted = true;
        shutdown(_fd, SHUT_RDWR); // wakes both directions: reads end, writes fail
        _output.Reader.CancelPendingRead();
        _loop.Run(() =>
        {
            EndReceive(abortReason);
            if (_wantWrite)
            {
                _wantWrite = false;
                _writable.SetResult(false);
            }
        });
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        // Completing the output lets the send loop send what is left, then FIN; it is not cancelled (that would
        // drop the last response, which the loop may not have sent yet: sends run after the loop's iteration).
        _output.Writer.Complete();
        _input.Reader.Complete();
        try
        {
            await _sending.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Abort(new ConnectionAbortedException("the send side did not finish"));
        }
        _loop.Run(() =>
        {
            EndReceive(null);
            if (_wantWrite)
            {
                _wantWrite = false;
                _writable.SetResult(false);
            }
            _source?.Dispose();
            _source = null;
            _socket.Dispose();
            _released.TrySetResult();
        });
        await _released.Task.ConfigureAwait(false);
        _closed.Dispose();
    }

    void IConnectionLifetimeFeature.Abort() => Abort(new ConnectionAbortedException("The connection was aborted by the application."));

    // IValueTaskSource over _writable (one await at a time, by the send loop).
    bool IValueTaskSource<bool>.GetResult(short token) => _writable.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _writable.GetStatus(token);
    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _writable.OnCompleted(continuation, state, token, flags);

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
    }

    private sealed class ConnectionItems : Dictionary<object, object?>;
}
