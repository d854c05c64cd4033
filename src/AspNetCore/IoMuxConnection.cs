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
using Microsoft.Extensions.Logging;

namespace IoMux.AspNetCore;

/// <summary>
/// One accepted connection, pumped by the loop that accepted it. Receiving runs on the loop: a readable socket is
/// read straight into the input pipe's memory and flushed; when the application has not consumed
/// <see cref="IoMuxTransportOptions.MaxReadBufferSize"/> the loop stops watching the socket for reading until the
/// flush completes (back-pressure reaches the peer through TCP). Sending is an async loop over the output pipe that
/// writes its segments with one writev(2) and, on would-block, asks the loop to watch for writability. Peer FIN
/// completes the input; the application completing its output sends FIN (shutdown(SHUT_WR)).
/// As Kestrel's SocketConnection: <see cref="ConnectionClosed"/> fires as soon as the receive side ends (the peer's
/// FIN or RST, an abort), which Kestrel turns into HttpContext.RequestAborted; <see cref="Abort"/> resets the
/// connection (RST) unless the FinOnError switch asks for FIN.
/// </summary>
internal sealed partial class IoMuxConnection : ConnectionContext,
    IConnectionIdFeature, IConnectionTransportFeature, IConnectionItemsFeature, IConnectionLifetimeFeature,
    IConnectionEndPointFeature, IMemoryPoolFeature, IConnectionSocketFeature, IValueTaskSource<bool>, IThreadPoolWorkItem
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
    private readonly MemoryPool<byte> _pool;
    private readonly Pipe _input, _output;
    private readonly CancellationTokenSource _closed = new();
    private readonly TaskCompletionSource _closedFired = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TransportDescriptors _descriptors;
    private readonly ILogger _logger;
    private readonly bool _finOnError;
    private readonly long _maxRead;
    private readonly Action _resumeReading, _watchWritable;
    private ManualResetValueTaskSourceCore<bool> _writable; // completed by the loop when the socket can take bytes
    private IoSource? _source;
    private Task _sending = Task.CompletedTask;
    private bool _readPaused, _readDone, _wantWrite, _closedQueued, _socketClosed;
    private volatile bool _aborted;
    private IDictionary<object, object?>? _items;
    private int _disposed;

    public IoMuxConnection(Socket socket, LoopThread loop, IoMuxTransportOptions options, MemoryPool<byte> pool, string id,
        TransportDescriptors descriptors, ILogger logger)
    {
        _socket = socket;
        _descriptors = descriptors;
        _logger = logger;
        _finOnError = options.FinOnError;
        _fd = (int)socket.Handle;
        _loop = loop;
        _pool = pool;
        ConnectionId = id;
        LocalEndPoint = socket.LocalEndPoint;
        RemoteEndPoint = socket.RemoteEndPoint;
        var appScheduler = options.Scheduling == ApplicationScheduling.Inline ? PipeScheduler.Inline : PipeScheduler.ThreadPool;
        long read = options.MaxReadBufferSize ?? 0, write = options.MaxWriteBufferSize ?? 0;
        _maxRead = read;
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
        Features.Set<IConnectionSocketFeature>(this); // as Kestrel's socket transport: per-connection options, SO_PEERCRED
    }

    public override string ConnectionId { get; set; }
    public override IFeatureCollection Features { get; }
    public override IDictionary<object, object?> Items { get => _items ??= new ConnectionItems(); set => _items = value; }
    public override IDuplexPipe Transport { get; set; }
    public override CancellationToken ConnectionClosed { get => _closed.Token; set => throw new NotSupportedException(); }
    public override EndPoint? LocalEndPoint { get; set; }
    public override EndPoint? RemoteEndPoint { get; set; }
    public MemoryPool<byte> MemoryPool => _pool;
    Socket IConnectionSocketFeature.Socket => _socket;

    /// <summary>On the loop thread: starts watching the socket and the send loop.</summary>
    public void Start()
    {
        _source = _loop.Loop.AddIo(_fd, Interest.Readable, OnReady, TriggerMode.Level, description: ConnectionId);
        _sending = SendLoopAsync();
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
            Memory<byte> memory;
            try
            {
                memory = writer.GetMemory(PinnedBlockMemoryPool.BlockSize);
            }
            catch (Exception e)
            {
                // The pool may be gone before the connection (Kestrel's pools throw ObjectDisposedException once
                // their listener disposed them). As Kestrel's SocketConnection.DoReceive, whose catch ends the
                // receive with an IOException: this connection's input ends with the error; thrown out of the
                // callback it stopped the loop, and every other connection on it.
                EndReceive(new IOException($"{ConnectionId}: no buffer to receive into", e));
                return;
            }
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
                    TransportLog.Pause(_logger, ConnectionId, _maxRead);
                    UpdateInterest();
                    _ = ResumeAfterFlushAsync(flush);
                    return;
                }
                if (flush.Result.IsCompleted)
                {
                    EndReceive(null); // the application stopped reading
                    return;
                }
                if (_readDone || _socketClosed)
                    return; // with inline scheduling the flush ran the application, which may have aborted us
                if (n < memory.Length)
                    return; // most likely drained: the next readiness brings the rest
                continue;
            }
            if (n == 0)
            {
                TransportLog.ReadFin(_logger, ConnectionId);
                EndReceive(null); // the peer's FIN: the application's reader sees the end
                return;
            }
            int errno = Errno.Last;
            if (errno == Errno.EAGAIN || errno == Errno.EINTR)
                return;
            if (errno == Errno.ECONNRESET)
            {
                TransportLog.Reset(_logger, ConnectionId);
                EndReceive(new ConnectionResetException($"{ConnectionId}: the peer reset the connection", new PosixException("read", errno)));
            }
            else
            {
                TransportLog.ReadError(_logger, ConnectionId, Errno.Name(errno));
                EndReceive(new IOException($"{ConnectionId}: read failed", new PosixException("read", errno)));
            }
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
        TransportLog.Resume(_logger, ConnectionId);
        _readPaused = false;
        UpdateInterest();
    }

    /// <summary>On the loop thread: the receive direction is over (end of stream, error, abort). The lifetime
    /// token fires now, from the thread pool (its callbacks are Kestrel's and the application's), as Kestrel's
    /// SocketConnection.DoReceive does in its finally (FireConnectionClosed): a client that sent FIN or RST is gone
    /// for HTTP, and its request's RequestAborted must say so at once, not when the response is done.</summary>
    private void EndReceive(Exception? error)
    {
        if (_readDone)
            return;
        _readDone = true;
        _input.Writer.Complete(error);
        UpdateInterest();
        if (!_closedQueued)
        {
            _closedQueued = true;
            ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
        }
    }

    /// <summary>On the thread pool, once: fires <see cref="ConnectionClosed"/>.</summary>
    void IThreadPoolWorkItem.Execute()
    {
        try
        {
            _closed.Cancel();
        }
        catch (Exception e)
        {
            _logger.LogError(e, "Connection id \"{ConnectionId}\": a ConnectionClosed callback failed.", ConnectionId);
        }
        _closedFired.TrySetResult();
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
                    TransportLog.WriteFin(_logger, ConnectionId);
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

    /// <summary>Pins segments for one writev without allocating: IoMux's own blocks carry their pointer; the
    /// blocks of Kestrel's pool (.NET 10) are pre-pinned arrays on the pinned object heap, whose
    /// <see cref="ReadOnlyMemory{T}.Pin"/> takes no GC handle; anything else (a large segment from the shared array
    /// pool) gets a handle for the call. The handles live in the scope itself (on the stack), so a write over a
    /// foreign pool's memory stays free of allocations.</summary>
    private unsafe struct PinScope : IDisposable
    {
        private Handles _handles;
        private int _count;

        public void* Pin(ReadOnlyMemory<byte> segment)
        {
            if (MemoryMarshal.TryGetMemoryManager(segment, out PinnedBlockMemoryPool.Block? block, out int start, out _))
                return block.Pointer + start;
            var handle = segment.Pin();
            _handles[_count++] = handle;
            return handle.Pointer;
        }

        public void Dispose()
        {
            for (int i = 0; i < _count; i++)
                _handles[i].Dispose();
        }

        [System.Runtime.CompilerServices.InlineArray(MaxSegmentsPerWrite)]
        private struct Handles
        {
            private MemoryHandle _first;
        }
    }

    /// <summary>Ends the connection at once. As Kestrel's socket transport (SocketConnection.Shutdown with a reason:
    /// <c>_socket.Close(timeout: 0)</c>), the peer gets a reset (RST: SO_LINGER 0, then close) and what was not
    /// sent is dropped; with the AppContext switch <c>Microsoft.AspNetCore.Server.Kestrel.FinOnError</c>, or without a
    /// reason (Kestrel aborts with null when the client half-closed: Http1Connection.OnInputOrOutputCompleted, and
    /// SocketConnection.Shutdown then shuts down both directions instead of resetting), it gets a FIN (shutdown). On
    /// the loop, so the descriptor is closed only after the loop stopped watching it.</summary>
    public override void Abort(ConnectionAbortedException abortReason)
    {
        _aborted = true;
        _output.Reader.CancelPendingRead();
        _loop.Run(() =>
        {
            EndReceive(abortReason);
            if (_wantWrite)
            {
                _wantWrite = false;
                _writable.SetResult(false);
            }
            if (_socketClosed)
                return;
            if (_finOnError || abortReason is null) // Kestrel passes null for an orderly end (see above)
            {
                TransportLog.WriteFin(_logger, ConnectionId);
                shutdown(_fd, SHUT_RDWR); // wakes both directions: reads end, writes fail
                return;
            }
            TransportLog.WriteRst(_logger, ConnectionId, abortReason.Message);
            Sockets.SetAbortiveClose(_fd); // SO_LINGER {1, 0}: close() resets (one home: src/Interop/Sockets.cs)
            CloseSocket();
        });
    }

    /// <summary>On the loop: stops watching the descriptor, then closes it (once).</summary>
    private void CloseSocket()
    {
        if (_socketClosed)
            return;
        _socketClosed = true;
        _source?.Dispose();
        _source = null;
        _socket.Dispose();
        _descriptors.Closed();
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        // Completing the output lets the send loop send what is left, then FIN; it is not cancelled (that would
        // drop the last response, which the loop may not have sent yet: sends run after the loop's iteration).
        _output.Writer.Complete();
        _input.Reader.Complete();
        // Waits for the send loop however long a slow reader takes, as Kestrel's SocketConnection.DisposeAsync awaits
        // its sending task: the response the application completed is the client's (a 5 s bound here cut slow
        // downloads off with a reset). What bounds it is Kestrel's: MinResponseDataRate, and at shutdown the
        // abort of every connection still open, which wakes the sender.
        await _sending.ConfigureAwait(false);
        _loop.Run(() =>
        {
            EndReceive(null);
            if (_wantWrite)
            {
                _wantWrite = false;
                _writable.SetResult(false);
            }
            CloseSocket();
            _released.TrySetResult();
        });
        await _released.Task.ConfigureAwait(false);
        await _closedFired.Task.ConfigureAwait(false); // the token is not cancelled after it is disposed
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
