using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using IoMux.Interop;
using IoMux.Loop;
using IoMux.Web;
using IoMux.Web.Http;

namespace IoMux.Fuzz;

/// <summary>
/// The http-connection fuzz target: one real <see cref="HttpConnection"/> on a real <see cref="EventLoop"/>, over an
/// AF_UNIX socket pair whose other end this harness drives as the input says: requests written in pieces of any
/// size (pipelined, split inside the head or the content), reads of any size or none, pauses during which only the
/// loop runs, a half-close, and the server's send buffer at its minimum or larger (so the server sees short writes
/// and EAGAIN, and continues on writability). The harness runs the loop itself, one iteration at a time, so it
/// knows in which iteration each server byte appeared.
/// </summary>
/// <remarks>
/// The oracle is written from RFC 9112 and the requests the harness built, not from the server's code: it frames
/// every response itself (status line, Content-Length, chunked, or until the close; no body for HEAD, 204, 304),
/// pairs the n-th final response with the n-th request, and checks
/// <list type="bullet">
/// <item>nothing is answered after a close was promised (a request with a "close" option, HTTP/1.0 without
/// "keep-alive", or a response with "Connection: close" or a close-delimited body), and a request that promised
/// close is not answered "Connection: keep-alive" (RFC 9112 §9.6);</item>
/// <item>the connection closes promptly after the last byte of a response that promised close: within
/// <see cref="PromptIterations"/> loop iterations, not at a timeout;</item>
/// <item>every 301's Location is a path on this server: one "/" then not "/" or "\" (a protocol-relative
/// "//host" or "/\host" is another origin to a browser);</item>
/// <item>a close the server did not promise is a timeout, and a timeout is only legitimate when nothing moved for
/// it: a request head or content started at least <see cref="HeaderTimeout"/> earlier and still incomplete, or no
/// byte sent by the server for the shortest of the header, keep-alive and send timeouts;</item>
/// <item>a connection with complete requests unanswered is closed by its timeout at the latest (no hang), framing
/// is well formed, and the bodies of known resources are byte for byte what was served.</item>
/// </list>
/// Times are measured conservatively, so that a slow or loaded machine can hide a finding but never invent one:
/// a server event is dated no earlier than the start of the loop iteration in which its bytes appeared, and no
/// later than when the harness saw them.
/// </remarks>
internal sealed unsafe partial class ConnectionTarget : IDisposable
{
    /// <summary>The server's header timeout here: short, so that a hang is a finding within a run.</summary>
    public static readonly TimeSpan HeaderTimeout = TimeSpan.FromMilliseconds(60);

    /// <summary>The server's keep-alive timeout here.</summary>
    public static readonly TimeSpan KeepAliveTimeout = TimeSpan.FromMilliseconds(120);

    /// <summary>The server's send timeout here (between two writes that make progress).</summary>
    public static readonly TimeSpan SendTimeout = TimeSpan.FromMilliseconds(90);

    /// <summary>The shortest time without progress after which the server may close on its own.</summary>
    private static readonly long ShortestTimeoutMs =
        (long)Math.Min(HeaderTimeout.TotalMilliseconds, Math.Min(KeepAliveTimeout.TotalMilliseconds, SendTimeout.TotalMilliseconds));

    /// <summary>Request content the handler server takes (more is 413).</summary>
    public const int MaxRequestBody = 1024;

    /// <summary>Loop iterations (each waits at most <see cref="StepWait"/>) within which a promised close must be seen.</summary>
    public const int PromptIterations = 10;

    private static readonly TimeSpan StepWait = TimeSpan.FromMilliseconds(5);

    /// <summary>The longest pause one op may ask for: well under the timeouts, so a harness that pauses never earns one.</summary>
    private const int MaxPauseMs = 40;

    /// <summary>Bounds on one run: the ops stop after this long, and the whole run after <see cref="RunCapMs"/>.</summary>
    private const int OpsBudgetMs = 1200, FinalPhaseMs = 600, RunCapMs = 2500;

    private const int BigFileLength = 96 * 1024 + 123, HugeFileLength = 1024 * 1024 + 7;
    private const int HandlerBigLength = 20000;

    private readonly string _top = Path.Combine(Path.GetTempPath(), $"iomux-fuzzconn-{Environment.ProcessId}-{Guid.NewGuid():N}");
    private readonly EventLoop _loop;
    private readonly HttpWorker _static, _handler;
    private readonly int[] _idleListeners = new int[4]; // two pipes whose read ends stand in for the listeners
    private readonly Dictionary<string, byte[]> _files = new(StringComparer.Ordinal);

    public ConnectionTarget()
    {
        string root = Path.Combine(_top, "www");
        Directory.CreateDirectory(Path.Combine(root, "sub", "deep"));
        Directory.CreateDirectory(Path.Combine(root, "evil"));
        AddFile(root, "index.html", "<p>root</p>\n"u8.ToArray());
        AddFile(root, "a.txt", "a\n"u8.ToArray());
        AddFile(root, "big.bin", Pattern(BigFileLength));
        AddFile(root, "huge.bin", Pattern(HugeFileLength)); // sendfile moves up to 64 KiB a call: many calls
        AddFile(root, "sub/index.html", "<p>sub</p>\n"u8.ToArray());
        AddFile(root, "sub/deep/x.txt", "x\n"u8.ToArray());
        BigFile = Path.Combine(root, "big.bin");

        var options = new HttpServerOptions
        {
            ThreadCount = 1,
            HeaderTimeout = HeaderTimeout,
            KeepAliveTimeout = KeepAliveTimeout,
            SendTimeout = SendTimeout,
            MaxRequestBodySize = MaxRequestBody,
        };
        _loop = new EventLoop(PollerFactory.Create());
        LibC.CreateNonBlockingPipe(out _idleListeners[0], out _idleListeners[1]);
        LibC.CreateNonBlockingPipe(out _idleListeners[2], out _idleListeners[3]);
        var descriptors = new ServerDescriptors(perConnection: 2);
        _static = new HttpWorker(_loop, _idleListeners[0], options, new StaticFileResponder(root), descriptors);
        _handler = new HttpWorker(_loop, _idleListeners[2], options, new HandlerResponder(Handle), descriptors);

        // The first runs of a process JIT the server's and the harness's paths, hundreds of milliseconds: longer
        // than the timeouts. A timeout then is no finding (nothing moved), but it hides what the input meant to
        // test, so a few plain exchanges run first. Their verdict is not the point; the inputs' are.
        foreach (byte[] warmUp in (byte[][])[[0, 2, 0, 1, 1, 2, 0, 3], [1, 1, 0, 11, 0, 13], [3, 0, 0, 20], [2, 1, 0, 2, 32, 5]])
        {
            try
            {
                Run(warmUp);
            }
            catch (PropertyViolationException)
            {
            }
        }
    }

    private string BigFile { get; }

    private void AddFile(string root, string relative, byte[] content)
    {
        File.WriteAllBytes(Path.Combine(root, relative), content);
        _files["/" + relative] = content;
    }

    public void Dispose()
    {
        _static.Stop();
        _handler.Stop();
        _loop.Dispose();
        _static.Responder.Dispose();
        _handler.Responder.Dispose();
        foreach (int fd in _idleListeners)
            LibC.CloseQuietly(fd);
        Directory.Delete(_top, recursive: true);
    }

    /// <summary>Deterministic printable content: the oracle knows every byte a known resource must carry.</summary>
    public static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
            bytes[i] = (byte)(33 + (i * 7 + i / 97) % 90);
        return bytes;
    }

    // ---- the handler server's resources ----

    private static readonly byte[] HandlerBig = Pattern(HandlerBigLength);

    private void Handle(RequestView request, ResponseBuilder response)
    {
        string path = Encoding.Latin1.GetString(request.Path);
        switch (path)
        {
            case "/h/text":
                response.Send("hello\n");
                return;
            case "/h/big":
                response.Send(HandlerBig);
                return;
            case "/h/echo":
                response.Send(request.Body);
                return;
            case "/h/file":
                response.SendFile(File.OpenHandle(BigFile), 0, BigFileLength);
                return;
            case "/h/throw":
                throw new InvalidOperationException("a handler that fails (fuzz harness)");
            case "/h/status/204":
                response.Status = 204;
                return;
            case "/h/status/304":
                response.Status = 304;
                return;
        }
        if (path.StartsWith("/h/stream/", StringComparison.Ordinal) && int.TryParse(path.AsSpan(10), out int unknown))
        {
            response.SendBody(Producer(unknown)); // no length: chunked to 1.1, closed after to 1.0
            return;
        }
        if (path.StartsWith("/h/length/", StringComparison.Ordinal) && int.TryParse(path.AsSpan(10), out int known))
        {
            response.SendBody(Producer(known), known);
            return;
        }
        response.Status = 404;
        response.Send("no\n");
    }

    private static HttpBodySource Producer(int length)
    {
        var content = Pattern(length);
        int offset = 0;
        return buffer =>
        {
            int n = Math.Min(buffer.Length, content.Length - offset);
            content.AsSpan(offset, n).CopyTo(buffer);
            offset += n;
            return n;
        };
    }

    /// <summary>What the body of a 200 to <paramref name="target"/> must be, when the harness knows it.</summary>
    private byte[]? ExpectedBody(bool handler, string target, int echoLength)
    {
        if (!handler)
        {
            string path = target.EndsWith('/') ? target + "index.html" : target;
            return _files.GetValueOrDefault(path);
        }
        return target switch
        {
            "/h/text" => "hello\n"u8.ToArray(),
            "/h/big" => HandlerBig,
            "/h/file" => _files["/big.bin"],
            "/h/echo" => Pattern(echoLength),
            _ when target.StartsWith("/h/stream/", StringComparison.Ordinal) => Pattern(int.Parse(target.AsSpan(10))),
            _ when target.StartsWith("/h/length/", StringComparison.Ordinal) => Pattern(int.Parse(target.AsSpan(10))),
            _ => null,
        };
    }

    /// <summary>Runs one input; throws <see cref="PropertyViolationException"/> when the oracle objects.</summary>
    public void Run(ReadOnlySpan<byte> input) => new ConnectionRun(this, input.ToArray()).Execute();

    // ---- libc calls the harness makes on its own end ----

    private const int MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000;
    private const int SOL_SOCKET = 1, SO_SNDBUF = 7;

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint send(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint recv(int fd, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setsockopt(int fd, int level, int option, int* value, uint length);

    private static long Milliseconds(long from, long to) => (to - from) * 1000 / Stopwatch.Frequency;

    // ---- the requests ----

    /// <summary>A request the harness wrote, and what the oracle knows about it without asking the server.</summary>
    private sealed class Request
    {
        public required byte[] Bytes;
        public required string Target;
        public required bool IsHead;
        public required bool PromisesClose;
        public required int ContentLength;
        public long Start, End; // offsets in the request stream
        public long FirstByteWritten; // Stopwatch time before the write that carried the first byte, 0 until then
        public string Describe => Encoding.Latin1.GetString(Bytes).Replace("\r\n", "\\r\\n", StringComparison.Ordinal);
    }

    private static readonly string[] KnownTargets =
    [
        "/", "/a.txt", "/big.bin", "/sub", "/sub/", "//evil/..%2fsub", "/\\evil/../sub", "/missing", "/sub?x=1",
        "/sub/deep", "/h/text", "/h/big", "/h/stream/0", "/h/stream/5000", "/h/stream/70000", "/h/length/1",
        "/h/length/5000", "/h/echo", "/h/status/204", "/h/status/304", "/h/file", "/h/throw", "//evil/../sub",
        "/evil/..%2fsub", "/%2fevil/../sub", "/.%2e/sub", "/huge.bin",
    ];

    private static readonly string[] Methods = ["GET", "HEAD", "POST", "DELETE"];

    private static readonly string?[] ConnectionValues =
        [null, "close", "keep-alive", "keep-alive, close", "CLOSE", "Upgrade", "close, keep-alive", "x,close"];

    private static readonly string[] Ranges = ["bytes=0-9", "bytes=5-", "bytes=-3", "bytes=99999999-", "bytes=1-1,3-4"];

    private static readonly string[] FreeNames = ["X-A", "Connection", "Host", "Keep-Alive", "If-None-Match", "Range", "TE", "Expect"];

    private static readonly int[] BodyLengths = [0, 1, 10, 100, 1000, 3000];

    private const string PathAlphabet = "ab/.%2fFe5C\\?#~-_sub/..%2e";

    /// <summary>Bytes of the input, read front to back; past the end every byte reads as 0.</summary>
    private sealed class InputReader(byte[] input)
    {
        private int _at;

        public bool More => _at < input.Length;

        public byte Next() => _at < input.Length ? input[_at++] : (byte)0;
    }

    private static bool HasToken(string value, string token) =>
        value.Split(',').Any(option => option.Trim(' ', '\t').Equals(token, StringComparison.OrdinalIgnoreCase));

    private static Request BuildRequest(InputReader reader, bool handler)
    {
        byte shape = reader.Next();
        string method = Methods[shape & 3];
        bool http10 = (shape & 4) != 0;
        string? connection = ConnectionValues[(shape >> 3) & 7];
        bool range = (shape & 0x40) != 0;
        bool free = (shape & 0x80) != 0;

        byte which = reader.Next();
        string target;
        if (which % (KnownTargets.Length + 1) == KnownTargets.Length)
        {
            var built = new StringBuilder();
            byte prefix = reader.Next();
            built.Append((prefix & 3) switch { 0 => "/", 1 => "//", 2 => "/\\", _ => handler ? "/h/" : "/sub/" });
            int length = reader.Next() % 24;
            for (int i = 0; i < length; i++)
                built.Append(PathAlphabet[reader.Next() % PathAlphabet.Length]);
            target = built.ToString();
        }
        else
        {
            target = KnownTargets[which % (KnownTargets.Length + 1)];
        }

        int contentLength = 0;
        bool expect = false;
        if (method == "POST")
        {
            byte body = reader.Next();
            contentLength = BodyLengths[body % BodyLengths.Length];
            expect = (body & 0x80) != 0;
        }

        var head = new StringBuilder();
        head.Append(method).Append(' ').Append(target).Append(http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
        if (!http10)
            head.Append("Host: fuzz\r\n");
        var connectionValues = new List<string>();
        if (connection is not null)
        {
            head.Append("Connection: ").Append(connection).Append("\r\n");
            connectionValues.Add(connection);
        }
        if (range)
            head.Append("Range: ").Append(Ranges[reader.Next() % Ranges.Length]).Append("\r\n");
        if (method == "POST")
        {
            head.Append("Content-Length: ").Append(contentLength).Append("\r\n");
            if (expect)
                head.Append("Expect: 100-continue\r\n");
        }
        if (free)
        {
            // One field with a fuzzed value: any byte but CR, LF and NUL-like controls (which become 'x'), so the
            // line stays one well-formed field whose effect the oracle can tell (a Connection value is parsed
            // here too). Framing fields are never fuzzed: the oracle pairs responses with requests by position.
            string name = FreeNames[reader.Next() % FreeNames.Length];
            int length = reader.Next() % 32;
            var value = new StringBuilder();
            for (int i = 0; i < length; i++)
            {
                byte b = reader.Next();
                value.Append(b is >= 0x20 and not 0x7f || b == '\t' ? (char)b : 'x');
            }
            string text = value.ToString();
            head.Append(name).Append(": ").Append(text).Append("\r\n");
            if (name == "Connection")
                connectionValues.Add(text);
        }
        head.Append("\r\n");

        bool close = connectionValues.Any(v => HasToken(v, "close"))
            || http10 && !connectionValues.Any(v => HasToken(v, "keep-alive"));
        var bytes = new List<byte>(Encoding.Latin1.GetBytes(head.ToString()));
        bytes.AddRange(Pattern(contentLength));
        return new Request
        {
            Bytes = [.. bytes],
            Target = target,
            IsHead = method == "HEAD",
            PromisesClose = close,
            ContentLength = contentLength,
        };
    }

    /// <summary>One run: the connection, the client end, the requests, the script and the oracle's state.</summary>
    private sealed class ConnectionRun
    {
        private readonly ConnectionTarget _target;
        private readonly InputReader _reader;
        private readonly bool _handler;
        private readonly int _sendBuffer;
        private readonly List<Request> _requests = [];
        private readonly byte[] _stream;
        private readonly long _started;
        private int _client = -1;
        private HttpConnection? _connection;

        // Writing.
        private long _written;
        private bool _halfClosed, _writeFailed;

        // Reading and the oracle.
        private byte[] _rx = new byte[16 * 1024];
        private int _rxLength, _rxParsed;
        private bool _eof;
        private int _responses; // final responses complete
        private int _promisedBy = -1; // the response (index) after which the server must close
        private string _promiseReason = "";
        private long _promiseIterations;
        private long _iterations;
        private long _lastServerSend; // start of the iteration in which server bytes last appeared
        private long _lastStepStart;
        private readonly StringBuilder _trace = new();

        public ConnectionRun(ConnectionTarget target, byte[] input)
        {
            _target = target;
            _reader = new InputReader(input);
            byte config = _reader.Next();
            _handler = (config & 1) != 0;
            _sendBuffer = ((config >> 1) & 3) switch { 0 => 0, 1 => 1, 2 => 16 * 1024, _ => 64 * 1024 };
            int count = 1 + _reader.Next() % 6;
            var stream = new List<byte>();
            for (int i = 0; i < count; i++)
            {
                var request = BuildRequest(_reader, _handler);
                request.Start = stream.Count;
                stream.AddRange(request.Bytes);
                request.End = stream.Count;
                _requests.Add(request);
            }
            _stream = [.. stream];
            _started = Stopwatch.GetTimestamp();
            _lastServerSend = _lastStepStart = _started;
        }

        private long Now => Stopwatch.GetTimestamp();

        private long Elapsed => Milliseconds(_started, Now);

        [System.Diagnostics.CodeAnalysis.DoesNotReturn]
        private void Fail(string what)
        {
            var requests = string.Join("\n", _requests.Select((r, i) => $"  request {i}: {r.Describe}"));
            var received = Encoding.Latin1.GetString(_rx, 0, Math.Min(_rxLength, 2048)).Replace("\r\n", "\\r\\n\n", StringComparison.Ordinal);
            throw new PropertyViolationException(
                $"http-connection ({(_handler ? "handler" : "static")} server, SO_SNDBUF {_sendBuffer}): {what}\n{requests}\n" +
                $"  trace: {_trace}\n  received ({_rxLength} bytes, first 2 KiB):\n{received}");
        }

        private void Note(string step)
        {
            if (_trace.Length < 4000)
                _trace.Append(Elapsed).Append("ms ").Append(step).Append("; ");
        }

        public void Execute()
        {
            int* pair = stackalloc int[2];
            if (LibC.socketpair(1 /* AF_UNIX */, 1 /* SOCK_STREAM */, 0, pair) != 0)
                throw Errno.Fail("socketpair");
            LibC.SetNonBlockingCloseOnExec(pair[0]);
            LibC.SetNonBlockingCloseOnExec(pair[1]);
            _client = pair[1];
            if (_sendBuffer > 0)
            {
                int size = _sendBuffer;
                setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &size, sizeof(int)); // the kernel raises 1 to its minimum
            }
            // Made inside a loop iteration, as the server's accept callback makes it: its first deadline is taken
            // from the loop's time, which between iterations is the previous iteration's (stale by however long
            // the harness spent since), and a deadline from a stale time is no finding of the server's.
            int server = pair[0];
            Exception? failed = null;
            _target._loop.Post(() =>
            {
                try
                {
                    _connection = new HttpConnection(Worker, server);
                }
                catch (Exception e)
                {
                    failed = e;
                }
            });
            _target._loop.RunOnce(TimeSpan.Zero);
            if (_connection is null)
            {
                LibC.CloseQuietly(server);
                LibC.CloseQuietly(_client);
                throw failed ?? new InvalidOperationException("the posted connection was not made");
            }
            try
            {
                Script();
                if (!_eof)
                    FinalPhase();
                if (Environment.GetEnvironmentVariable("IOMUX_FUZZ_TRACE") == "1")
                    Console.Error.WriteLine($"passed: {string.Join(" | ", _requests.Select(r => r.Describe))}\n  trace: {_trace}");
            }
            finally
            {
                LibC.CloseQuietly(_client);
                _connection.Close(); // idempotent: a connection the server closed already stays closed
                _target._loop.RunOnce(TimeSpan.Zero);
            }
        }

        private HttpWorker Worker => _handler ? _target._handler : _target._static;

        // ---- the script ----

        private void Script()
        {
            while (_reader.More && !_eof && Elapsed < OpsBudgetMs)
            {
                byte op = _reader.Next();
                byte argument = _reader.Next();
                switch (op % 8)
                {
                    case 0:
                    case 1:
                        Write(argument == 0 ? int.MaxValue : argument);
                        break;
                    case 2:
                    case 3:
                        Read(argument < 16 ? argument + 1 : argument * 64);
                        break;
                    case 4:
                        Note("step");
                        break;
                    case 5:
                        Pause(argument % (MaxPauseMs + 1));
                        continue; // the pause ran the loop
                    case 6:
                        Read(int.MaxValue);
                        break;
                    case 7:
                        if (!_halfClosed && argument % 4 == 0) // rarer than the others: it ends what can be asked
                        {
                            Note("half-close");
                            LibC.shutdown(_client, 1 /* SHUT_WR */);
                            _halfClosed = true;
                        }
                        break;
                }
                if (_eof)
                    break;
                Step(TimeSpan.Zero);
                CheckPromise();
            }
        }

        /// <summary>Writes everything left, then reads until every owed response is in and any promised close is
        /// seen; a server that neither answers nor closes within <see cref="FinalPhaseMs"/> (longer than any of its
        /// timeouts, timer slack included) is a finding.</summary>
        private void FinalPhase()
        {
            if (!_halfClosed)
                Write(int.MaxValue);
            long start = Now;
            while (!_eof && Elapsed < RunCapMs)
            {
                Read(int.MaxValue);
                if (_eof)
                    break;
                CheckPromise();
                if (!_halfClosed && _written < _stream.Length && !_writeFailed)
                    Write(int.MaxValue);
                if (_promisedBy < 0 && Owed() == 0 && _written == _stream.Length)
                    return; // everything answered on a connection that stays open
                // Judged only once an iteration has started past the bound: a descheduled process gives the server
                // no iteration in which its overdue timer could fire, and that is no hang of the server's.
                if (Milliseconds(start, _lastStepStart) > FinalPhaseMs)
                {
                    if (Owed() > 0)
                        Fail($"{Owed()} complete request(s) unanswered {FinalPhaseMs} ms after the last write, the connection still open (a hang)");
                    return;
                }
                Step(StepWait);
            }
        }

        /// <summary>Requests written whole and answered by no response yet, up to the first that promised close.</summary>
        private int Owed()
        {
            int owed = 0;
            for (int i = _responses; i < _requests.Count; i++)
            {
                if (_requests[i].End > _written)
                    break;
                owed++;
                if (_requests[i].PromisesClose)
                    break;
            }
            return _promisedBy >= 0 || _halfClosed ? 0 : owed;
        }

        private void Step(TimeSpan wait)
        {
            int before = Available();
            long start = Now;
            _lastStepStart = start;
            _target._loop.RunOnce(wait);
            _iterations++;
            if (Available() > before)
                _lastServerSend = start;
        }

        private int Available()
        {
            int n = 0;
            return LibC.ioctl(_client, LibC.FIONREAD, &n) == 0 ? n : 0;
        }

        private void Pause(int milliseconds)
        {
            Note($"pause {milliseconds}");
            long until = Now + milliseconds * Stopwatch.Frequency / 1000;
            do
            {
                long left = (until - Now) * 1000 / Stopwatch.Frequency;
                Step(TimeSpan.FromMilliseconds(Math.Max(0, left)));
                if (_promisedBy >= 0)
                    CheckPromise();
            }
            while (Now < until);
            // What the pause let the server send is read by the next read; an EOF during it shows there.
        }

        private void Write(int count)
        {
            if (_halfClosed || _writeFailed || _written >= _stream.Length)
                return;
            int length = (int)Math.Min(count, _stream.Length - _written);
            long before = Now;
            nint n;
            fixed (byte* bytes = &_stream[_written])
                n = send(_client, bytes, (nuint)length, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno != Errno.EAGAIN && errno != Errno.EINTR)
                {
                    Note($"write failed errno {errno}");
                    _writeFailed = true; // the server closed its end; what it sent is still to be read
                }
                return;
            }
            foreach (var request in _requests)
            {
                if (request.FirstByteWritten == 0 && request.Start < _written + n)
                    request.FirstByteWritten = before;
            }
            _written += n;
            Note($"wrote {n}");
        }

        private void Read(int count)
        {
            int total = 0;
            while (total < count && !_eof)
            {
                if (_rx.Length - _rxLength < 4096)
                    Array.Resize(ref _rx, _rx.Length * 2);
                int want = Math.Min(count - total, _rx.Length - _rxLength);
                nint n;
                fixed (byte* buffer = &_rx[_rxLength])
                    n = recv(_client, buffer, (nuint)want, MSG_DONTWAIT);
                if (n > 0)
                {
                    _rxLength += (int)n;
                    total += (int)n;
                    Parse();
                    continue;
                }
                if (n < 0)
                {
                    int errno = Marshal.GetLastPInvokeError();
                    if (errno == Errno.EAGAIN || errno == Errno.EINTR)
                        break;
                    if (errno != Errno.ECONNRESET)
                        Fail($"recv failed with errno {errno}");
                }
                Note(n == 0 ? "EOF" : "reset");
                _eof = true;
                Parse();
                OnClose();
            }
            if (total > 0)
                Note($"read {total}");
        }

        // ---- the oracle ----

        /// <summary>After a response that promised close: the close must come within a few iterations, and no byte
        /// may come before it.</summary>
        private void CheckPromise()
        {
            if (_promisedBy < 0 || _eof)
                return;
            for (int i = 0; i <= PromptIterations && !_eof; i++)
            {
                Read(int.MaxValue);
                if (_eof)
                    return;
                if (_iterations - _promiseIterations >= PromptIterations)
                    Fail($"no close {PromptIterations} loop iterations ({Milliseconds(_lastServerSend, Now)} ms) after the last byte of response {_promisedBy}, which promised close ({_promiseReason})");
                Step(StepWait);
            }
        }

        private void OnClose()
        {
            long now = Now;
            // Bytes left unframed at the close: a response cut short (Parse waits for more and leaves them).
            string cut = _rxParsed < _rxLength ? $", {_rxLength - _rxParsed} bytes into response {_responses}" : "";
            if (_promisedBy >= 0)
            {
                if (cut.Length > 0)
                    Fail($"bytes after response {_promisedBy}, which promised close ({_promiseReason}){cut}");
                return; // promised (and CheckPromise saw it come promptly)
            }
            if (_halfClosed && cut.Length == 0)
                return; // the client ended its side: a close between responses is an answer
            // A close nobody promised: legitimate only as a timeout, and a timeout only when nothing moved for it:
            // no server byte for the shortest timeout (the send, keep-alive and header deadlines all run from a
            // server action no earlier than its last send), or a request still incomplete that started at least
            // the header timeout ago (the header timeout runs from a head's first byte, whatever moved since).
            long quiet = Milliseconds(_lastServerSend, now);
            if (quiet + 1 >= ShortestTimeoutMs)
                return;
            var partial = _requests.FirstOrDefault(r => r.Start < _written && _written < r.End);
            long since = partial is null ? -1 : Milliseconds(partial.FirstByteWritten, now);
            if (partial is not null && since + 1 >= (long)HeaderTimeout.TotalMilliseconds)
                return;
            Fail($"closed without a promise {quiet} ms after the server last sent{cut}" +
                (partial is null ? "" : $", {since} ms after the first byte of an incomplete request") +
                $": a deadline of {ShortestTimeoutMs} ms or more hit while bytes moved");
            // Requests still unanswered at a legitimate timeout are no finding: the timer and the request's bytes
            // can be due in the same iteration (a descheduled harness), and either may be served first.
        }

        private void Parse()
        {
            while (_rxParsed < _rxLength)
            {
                int consumed = ParseOne(_rx.AsSpan(_rxParsed, _rxLength - _rxParsed));
                if (consumed == 0)
                    return;
                _rxParsed += consumed;
            }
        }

        /// <summary>Frames one response from the front of <paramref name="data"/>: its length once complete, 0 while
        /// more is needed.</summary>
        private int ParseOne(ReadOnlySpan<byte> data)
        {
            int headEnd = data.IndexOf("\r\n\r\n"u8);
            if (headEnd < 0)
            {
                if (data.Length > 8192)
                    Fail("a response head longer than 8 KiB");
                return 0; // at the close, OnClose judges the cut
            }
            string head = Encoding.Latin1.GetString(data[..headEnd]);
            string[] lines = head.Split("\r\n");
            var statusLine = lines[0];
            if (statusLine.Length < 12 || !(statusLine.StartsWith("HTTP/1.1 ", StringComparison.Ordinal) || statusLine.StartsWith("HTTP/1.0 ", StringComparison.Ordinal))
                || !int.TryParse(statusLine.AsSpan(9, 3), out int status) || status < 100 || statusLine.Length > 12 && statusLine[12] != ' ')
            {
                Fail($"a malformed status line '{statusLine}' where response {_responses} starts");
                return 0;
            }
            long contentLength = -1;
            bool chunked = false, close = false, keepAlive = false;
            string? location = null, contentRange = null;
            foreach (var line in lines.Skip(1))
            {
                int colon = line.IndexOf(':', StringComparison.Ordinal);
                if (colon <= 0 || line[..colon].Any(c => c is ' ' or '\t'))
                    Fail($"a malformed header line '{line}' in response {_responses}");
                string name = line[..colon];
                string value = line[(colon + 1)..].Trim(' ', '\t');
                if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                {
                    if (contentLength >= 0 || !long.TryParse(value, out contentLength) || contentLength < 0)
                        Fail($"a bad or repeated Content-Length '{value}' in response {_responses}");
                }
                else if (name.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase))
                {
                    chunked = value.Equals("chunked", StringComparison.OrdinalIgnoreCase);
                }
                else if (name.Equals("Connection", StringComparison.OrdinalIgnoreCase))
                {
                    close |= HasToken(value, "close");
                    keepAlive |= HasToken(value, "keep-alive");
                }
                else if (name.Equals("Location", StringComparison.OrdinalIgnoreCase))
                {
                    location = value;
                }
                else if (name.Equals("Content-Range", StringComparison.OrdinalIgnoreCase))
                {
                    contentRange = value;
                }
            }
            int bodyStart = headEnd + 4;

            if (status is >= 100 and < 200)
            {
                // An interim response (100 Continue to Expect): no body, and it answers nothing yet.
                Note($"interim {status}");
                return bodyStart;
            }

            int index = _responses;
            Request? request = index < _requests.Count ? _requests[index] : null;
            if (request is null || request.FirstByteWritten == 0)
                Fail($"response {index} ({statusLine}) answers no request the client sent ({_requests.Count} built, {_written} bytes written)");

            // RFC 9112 §6.3: the body's length.
            ReadOnlySpan<byte> body;
            int total;
            bool closeDelimited = false;
            if (status == 408 || status >= 400 && request!.End > _written)
            {
                // An error to a request the server had not received whole (a 408 always is): the server may not
                // know the method, so whether a HEAD's answer carries the error text is its call. It must close
                // (checked in Answered), so the response is everything up to the close.
                if (!_eof)
                    return 0;
                body = data[bodyStart..];
                total = data.Length;
            }
            else if (request!.IsHead || status is 204 or 304)
            {
                body = default;
                total = bodyStart;
            }
            else if (chunked)
            {
                var decoded = new List<byte>();
                int at = bodyStart;
                while (true)
                {
                    int lineEnd = data[at..].IndexOf("\r\n"u8);
                    if (lineEnd < 0)
                        return NeedMore();
                    string sizeText = Encoding.Latin1.GetString(data.Slice(at, lineEnd));
                    if (!int.TryParse(sizeText, System.Globalization.NumberStyles.AllowHexSpecifier, null, out int size) || size < 0)
                        Fail($"a bad chunk size '{sizeText}' in response {index}");
                    at += lineEnd + 2;
                    if (size == 0)
                    {
                        if (data.Length < at + 2)
                            return NeedMore();
                        if (!data.Slice(at, 2).SequenceEqual("\r\n"u8))
                            Fail($"a trailer or garbage after the last chunk of response {index}");
                        at += 2;
                        break;
                    }
                    if (data.Length < at + size + 2)
                        return NeedMore();
                    decoded.AddRange(data.Slice(at, size));
                    if (!data.Slice(at + size, 2).SequenceEqual("\r\n"u8))
                        Fail($"a chunk of response {index} not followed by CRLF");
                    at += size + 2;
                }
                body = decoded.ToArray();
                total = at;
            }
            else if (contentLength >= 0)
            {
                if (data.Length < bodyStart + contentLength)
                    return NeedMore();
                body = data.Slice(bodyStart, (int)contentLength);
                total = bodyStart + (int)contentLength;
            }
            else
            {
                // RFC 9112 §6.3 (8): the body ends with the connection, so the response promised a close. The
                // harness knows how long its known resources are: the close must follow their last byte as
                // promptly as any other.
                closeDelimited = true;
                var expected = status == 200 ? _target.ExpectedBody(_handler, request.Target, request.ContentLength) : null;
                if (expected is not null ? data.Length - bodyStart < expected.Length : !_eof)
                    return 0; // a known body cut by the close stays unframed: OnClose judges the cut
                total = expected is not null ? bodyStart + expected.Length : data.Length; // what follows answers after the close
                body = data[bodyStart..total];
            }

            Note($"response {index} {status}{(close || closeDelimited ? " (closes)" : keepAlive ? " (keep-alive)" : "")}");
            _responses++;
            Answered(index, request, status, close || closeDelimited, keepAlive, location, contentRange, body.ToArray());
            return total;
        }

        /// <summary>The response is not complete yet: 0 (at the close, OnClose judges the cut).</summary>
        private static int NeedMore() => 0;

        private void Answered(int index, Request request, int status, bool responseCloses, bool keepAlive, string? location,
            string? contentRange, byte[] body)
        {
            if (_promisedBy >= 0)
                Fail($"response {index} ({status}) answers after response {_promisedBy} promised close ({_promiseReason})");
            for (int i = 0; i < index; i++)
            {
                if (_requests[i].PromisesClose)
                    Fail($"response {index} ({status}) answers request {index} although request {i} promised close (RFC 9112 §9.6)");
            }
            if (request.PromisesClose && keepAlive)
                Fail($"response {index} ({status}) says Connection: keep-alive to a request that promised close");
            if ((request.End > _written || status == 408) && !responseCloses)
                Fail($"response {index} ({status}) answers request {index} before it was written whole, and keeps the connection");
            if (status == 408)
            {
                // The header timeout counts from the head's first byte; the server read it no earlier than the
                // harness wrote it, so a 408 seen sooner than the timeout after that write came early.
                long since = Milliseconds(request.FirstByteWritten, Now);
                if (since + 1 < (long)HeaderTimeout.TotalMilliseconds)
                    Fail($"response {index}: 408 {since} ms after the request's first byte, before the {HeaderTimeout.TotalMilliseconds} ms header timeout");
            }
            if (status == 301)
            {
                if (location is null)
                    Fail($"a 301 without Location (response {index})");
                else if (location.Length == 0 || location[0] != '/' || location.Length > 1 && location[1] is '/' or '\\')
                    Fail($"response {index}: 301 Location '{location}' for '{request.Target}' is not a path on this server");
            }
            if (!request.IsHead && status is 200 or 206)
            {
                var expected = _target.ExpectedBody(_handler, request.Target, request.ContentLength);
                if (expected is not null && status == 200 && !body.AsSpan().SequenceEqual(expected))
                    Fail($"response {index}: a {body.Length}-byte body for '{request.Target}', not the {expected.Length} bytes served (first difference at {FirstDifference(body, expected)})");
                if (expected is not null && status == 206)
                    CheckRange(index, expected, contentRange, body);
            }
            if (responseCloses || request.PromisesClose)
            {
                _promisedBy = index;
                _promiseReason = responseCloses ? "Connection: close or a close-delimited body" : "the request's close option or HTTP/1.0";
                _promiseIterations = _iterations;
            }
        }

        private void CheckRange(int index, byte[] file, string? contentRange, byte[] body)
        {
            // "bytes FIRST-LAST/LENGTH" (RFC 9110 §14.4)
            var match = contentRange is null ? null : System.Text.RegularExpressions.Regex.Match(contentRange, @"^bytes (\d+)-(\d+)/(\d+)$");
            if (match is null || !match.Success)
            {
                Fail($"response {index}: 206 with Content-Range '{contentRange}'");
                return;
            }
            long first = long.Parse(match.Groups[1].Value), last = long.Parse(match.Groups[2].Value), length = long.Parse(match.Groups[3].Value);
            if (length != file.Length || first > last || last >= file.Length || body.Length != last - first + 1
                || !body.AsSpan().SequenceEqual(file.AsSpan((int)first, (int)(last - first + 1))))
                Fail($"response {index}: 206 '{contentRange}' with {body.Length} bytes that are not that range of the {file.Length}-byte file");
        }

        private static int FirstDifference(byte[] a, byte[] b)
        {
            int n = Math.Min(a.Length, b.Length);
            for (int i = 0; i < n; i++)
                if (a[i] != b[i])
                    return i;
            return n;
        }
    }
}
