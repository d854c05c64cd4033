using System.Net;
using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Web.Echo;

/// <summary>A TCP echo server: one event loop per thread, each on its own <see cref="ListenerGroup"/> member;
/// every connection echoes what it reads, and stops reading while its echo cannot be written (a client that
/// does not read cannot make the server buffer without bound). Level-triggered, allocation-free per message.</summary>
public sealed class EchoService : IDisposable
{
    private readonly ListenerGroup _group;
    private readonly EventLoop[] _loops;
    private readonly Thread[] _threads;
    private readonly HashSet<EchoConnection>[] _open;
    private readonly AcceptGate[] _gates;

    /// <summary>Starts <paramref name="threadCount"/> loops (default one per core) on <paramref name="endpoint"/>.</summary>
    /// <param name="endpoint">The address (port 0: the kernel picks).</param>
    /// <param name="threadCount">Loop threads, one loop each (0: one per core; the knob every IoMux server calls ThreadCount).</param>
    /// <param name="backend">An IOMUX_BACKEND name, or null for the default.</param>
    /// <param name="logger">Where accept failures are logged (default: nowhere).</param>
    public EchoService(IPEndPoint endpoint, int threadCount = 0, string? backend = null, Microsoft.Extensions.Logging.ILogger? logger = null)
    {
        int threads = threadCount > 0 ? threadCount : Environment.ProcessorCount;
        _group = ListenerGroup.Bind(endpoint, threads);
        _loops = new EventLoop[threads];
        _threads = new Thread[threads];
        _open = new HashSet<EchoConnection>[threads];
        _gates = new AcceptGate[threads];
        var descriptors = new ServerDescriptors(perConnection: 1);
        try
        {
            for (int i = 0; i < threads; i++)
            {
                var loop = _loops[i] = new EventLoop(backend is null ? PollerFactory.Create() : PollerFactory.Create(backend));
                loop.Poller.UseServerSpin(); // catch the next message awake (Poller.SpinBeforeSleep)
                var open = _open[i] = [];
                int listener = _group.Listeners[i];
                AcceptGate? gate = null;
                var source = loop.AddIo(listener, Interest.Readable, (_, _) =>
                {
                    for (int n = 0; n < 64 && gate!.Admits(); n++)
                    {
                        int fd = LibC.Accept(listener);
                        if (fd < 0)
                        {
                            if (gate!.Failed(-fd))
                                continue;
                            break;
                        }
                        gate!.Accepted();
                        Sockets.SetIntOption(fd, Sockets.IPPROTO_TCP, Sockets.TCP_NODELAY, 1);
                        try
                        {
                            open.Add(new EchoConnection(loop, fd, open, gate));
                        }
                        catch (DescriptorOutOfRangeException e)
                        {
                            gate.Released();
                            gate.CannotWatch(fd, e);
                        }
                    }
                }, description: "echo listener");
                gate = _gates[i] = new AcceptGate(loop, source, logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, descriptors);
                _threads[i] = new Thread(() => loop.Run()) { IsBackground = true, Name = $"IoMux echo {i}" };
            }
        }
        catch
        {
            // A loop that cannot start (an unusable backend, EMFILE) must not leave the listeners bound.
            foreach (var gate in _gates)
                gate?.Dispose();
            foreach (var loop in _loops)
                loop?.Dispose();
            _group.Dispose();
            throw;
        }
        foreach (var thread in _threads)
            thread.Start();
    }

    /// <summary>The address served.</summary>
    public IPEndPoint Endpoint => _group.Endpoint;

    /// <summary>Makes every loop of the service a member of <paramref name="watchdog"/>: its pings stop when any of
    /// them stops iterating (see <see cref="LoopWatchdog"/>).</summary>
    public void AttachWatchdog(LoopWatchdog watchdog)
    {
        foreach (var loop in _loops)
            watchdog.AttachLater(loop);
    }

    /// <summary>Stops the loops (closing their connections' sources) and the listeners.</summary>
    public void Dispose()
    {
        for (int i = 0; i < _loops.Length; i++)
        {
            var (loop, open, gate) = (_loops[i], _open[i], _gates[i]);
            loop.Post(() =>
            {
                gate.Dispose();
                foreach (var connection in open.ToArray())
                    connection.Close();
                loop.Exit();
            });
        }
        foreach (var thread in _threads)
            thread.Join();
        foreach (var loop in _loops)
            loop.Dispose();
        _group.Dispose();
    }

    private sealed unsafe class EchoConnection
    {
        private readonly int _fd;
        private readonly IoSource _source;
        private readonly byte[] _buffer = new byte[16 * 1024];
        private readonly HashSet<EchoConnection> _open;
        private readonly AcceptGate _gate;
        private int _start, _pending;

        public EchoConnection(EventLoop loop, int fd, HashSet<EchoConnection> open, AcceptGate gate)
        {
            _fd = fd;
            _open = open;
            _gate = gate;
            _source = loop.AddIo(fd, Interest.Readable, (_, _) => OnReady(), description: "echo connection");
        }

        private void OnReady()
        {
            if (_pending > 0 && !Drain())
                return;
            nint n;
            fixed (byte* buffer = _buffer)
                n = LibC.read(_fd, buffer, (nuint)_buffer.Length);
            if (n == 0 || n < 0 && Errno.Last is var errno && errno != Errno.EAGAIN && errno != Errno.EINTR)
            {
                Close();
                return;
            }
            if (n < 0)
                return;
            _start = 0;
            _pending = (int)n;
            Drain();
        }

        /// <summary>Writes the pending echo; false while the socket is full (then only writability is watched).</summary>
        private bool Drain()
        {
            while (_pending > 0)
            {
                nint n;
                fixed (byte* buffer = &_buffer[_start])
                    n = LibC.write(_fd, buffer, (nuint)_pending);
                if (n < 0)
                {
                    int errno = Errno.Last;
                    if (errno == Errno.EINTR)
                        continue;
                    if (errno == Errno.EAGAIN)
                    {
                        if (_source.Interest != Interest.Writable)
                            _source.SetInterest(Interest.Writable);
                        return false;
                    }
                    Close();
                    return false;
                }
                _start += (int)n;
                _pending -= (int)n;
            }
            if (_source.Interest != Interest.Readable)
                _source.SetInterest(Interest.Readable);
            return true;
        }

        public void Close()
        {
            if (_open.Remove(this))
                _gate.Released();
            _source.Dispose();
            LibC.CloseQuietly(_fd);
        }
    }
}
