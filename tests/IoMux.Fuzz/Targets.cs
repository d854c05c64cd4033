using System.Net;
using System.Net.Sockets;
using System.Text;
using IoMux.Backends.EventPorts;
using IoMux.Backends.Kqueue;
using IoMux.Interop;
using IoMux.SocketProxy;
using IoMux.Web.Http;
using static IoMux.Backends.Kqueue.Kq;

namespace IoMux.Fuzz;

/// <summary>A fuzz input broke a property of its target. Under afl-fuzz any exception that leaves a target is a
/// crash; the corpus replay in IoMux.Tests fails with this message.</summary>
internal sealed class PropertyViolationException(string message) : Exception(message);

/// <summary>
/// The fuzz targets, shared by the SharpFuzz program (tests/IoMux.Fuzz/Program.cs, instrumented, under afl-fuzz)
/// and the corpus replay (tests/IoMux.Tests/FuzzCorpusTests.cs, which links this file in). Each target feeds
/// one input to one parser or translation and throws when a property breaks: an exception the code does not
/// document, a result that contradicts itself, a path outside the served root, an event nobody registered.
/// Allowed outcomes (the documented typed errors) return quietly.
/// </summary>
internal sealed class FuzzTargets : IDisposable
{
    /// <summary>The target names, as run.sh, the corpus folders and the dictionaries spell them.</summary>
    public static IReadOnlyList<string> Names { get; } =
        ["http-request", "timespan", "listen-fds", "backend-target", "kevent-translation", "port-translation", "http-connection"];

    private readonly Lazy<ServedTree> _tree = new(() => new ServedTree());
    private readonly Lazy<Descriptors> _descriptors = new(() => new Descriptors());
    private readonly Lazy<ConnectionTarget> _connection = new(() => new ConnectionTarget());

    /// <summary>Runs <paramref name="target"/> on <paramref name="input"/>.</summary>
    public void Run(string target, ReadOnlySpan<byte> input)
    {
        switch (target)
        {
            case "http-request": RequestView(input); break;
            case "timespan": TimeSpanText(input); break;
            case "listen-fds": ListenFds(input); break;
            case "backend-target": BackendTargetText(input); break;
            case "kevent-translation": KeventTranslation(input.ToArray()); break;
            case "port-translation": PortTranslation(input.ToArray()); break;
            case "http-connection": _connection.Value.Run(input); break;
            default: throw new ArgumentException($"unknown fuzz target '{target}'", nameof(target));
        }
    }

    public void Dispose()
    {
        if (_tree.IsValueCreated)
            _tree.Value.Dispose();
        if (_descriptors.IsValueCreated)
            _descriptors.Value.Dispose();
        if (_connection.IsValueCreated)
            _connection.Value.Dispose();
    }

    private static void Require(bool property, string what)
    {
        if (!property)
            throw new PropertyViolationException(what);
    }

    // ---- http-request: HttpRequestParser.Parse, then StaticRoot.Normalize and StaticRoot.Open on the target ----

    private void RequestView(ReadOnlySpan<byte> input)
    {
        var head = new HttpRequestHead();
        var status = HttpRequestParser.Parse(input, head); // documents no exception: any is a crash
        switch (status)
        {
            case ParseStatus.Complete:
                Require(head.ErrorStatus == 0, $"complete head with error status {head.ErrorStatus}");
                Require(head.Version is 10 or 11, $"complete head with version {head.Version}");
                Require(head.HeadLength > 0 && head.HeadLength <= input.Length && head.HeadLength <= HttpRequestParser.MaxHead,
                    $"head length {head.HeadLength} outside the {input.Length} input bytes");
                Require(head.TargetStart > 0 && head.TargetLength > 0 && head.TargetStart + head.TargetLength < head.HeadLength,
                    $"target {head.TargetStart}+{head.TargetLength} outside the head");
                Require(!head.HasTransferEncoding && head.ContentLength <= 0, "a complete head that announces a body");
                Require(head.MethodLength > 0 && head.MethodStart + head.MethodLength < head.TargetStart, "the method overlaps the target");
                Conditions(input, head);
                break;
            case ParseStatus.Invalid:
                Require(head.ErrorStatus is 400 or 413 or 414 or 431 or 505, $"invalid head with status {head.ErrorStatus}");
                break;
            case ParseStatus.Incomplete:
                Require(head.ErrorStatus == 0, "incomplete head with an error status");
                Require(input.Length < HttpRequestParser.MaxHead, $"incomplete after {input.Length} bytes, past the {HttpRequestParser.MaxHead}-byte limit");
                return;
            default:
                throw new PropertyViolationException($"parse status {status}");
        }
        if (head.TargetLength > 0) // the request line parsed (the headers may still have been refused)
            Resolve(input.Slice(head.TargetStart, head.TargetLength));
    }

    /// <summary>The fields the static server acts on lie inside the header section, and the Range and
    /// precondition code never throws on them and never yields a range outside the file.</summary>
    private static void Conditions(ReadOnlySpan<byte> input, HttpRequestHead head)
    {
        foreach (var (name, field) in new[] { ("Range", head.Range), ("If-Range", head.IfRange), ("If-None-Match", head.IfNoneMatch), ("If-Modified-Since", head.IfModifiedSince) })
            Require(!field.Present || field.Start >= head.FieldsStart && field.Start + field.Length <= head.HeadLength,
                $"{name} at {field.Start}+{field.Length} outside the fields {head.FieldsStart}..{head.HeadLength}");
        foreach (long length in new long[] { 0, 1, 5, 1 << 20, long.MaxValue / 2 })
        {
            var range = ByteRange.Parse(head.Range.In(input), length);
            Require(range.IsWhole || range.Unsatisfiable || 0 <= range.First && range.First <= range.Last && range.Last < length,
                $"range {range.First}-{range.Last} of a {length}-byte file");
        }
        Validators.NotModified(head.IfNoneMatch.In(input), head.IfModifiedSince.In(input), "\"5f1a2b3c-5\""u8, 0x5f1a2b3c);
        Validators.IfRangeHolds(head.IfRange.In(input), "\"5f1a2b3c-5\""u8, 0x5f1a2b3c);
    }

    private void Resolve(ReadOnlySpan<byte> target)
    {
        var tree = _tree.Value;
        Span<byte> normalized = stackalloc byte[HttpRequestParser.MaxRequestLine + 16];
        int normalizeStatus = StaticRoot.Normalize(target, normalized, out int length);
        Require(normalizeStatus is 0 or 400, $"Normalize answered {normalizeStatus}");
        if (normalizeStatus == 0)
        {
            var path = normalized[..length];
            Require(length == 0 || path[0] != '/', "normalized path is absolute");
            Require(!path.Contains((byte)0), "normalized path holds a NUL");
            if (!path.IsEmpty) // "" is the root itself
            {
                foreach (var range in path.Split((byte)'/'))
                {
                    var segment = path[range];
                    Require(!segment.IsEmpty && !segment.SequenceEqual("."u8) && !segment.SequenceEqual(".."u8),
                        $"normalized path keeps segment '{Encoding.UTF8.GetString(segment)}'");
                }
            }
            string lexical = Path.GetFullPath(Path.Join(tree.Root, Encoding.UTF8.GetString(path)));
            Require(IsBeneath(lexical, tree.Root), $"'{Encoding.UTF8.GetString(target)}' resolves to {lexical}, outside {tree.Root}");
        }
        int openStatus = tree.Static.Open(target, out int fd, out long size, out _, out _);
        Require(openStatus is 0 or 301 or 400 or 404, $"Open answered {openStatus}");
        Require(normalizeStatus == 0 || openStatus == 400, $"Open answered {openStatus} for a target Normalize refused");
        if (openStatus != 0)
        {
            Require(fd == -1, $"Open answered {openStatus} and left fd {fd}");
            return;
        }
        try
        {
            // What the kernel opened, not what the code meant to open: the descriptor's own path.
            string? opened = new FileInfo($"/proc/self/fd/{fd}").LinkTarget;
            Require(opened is not null && IsBeneath(opened, tree.Static.RealRoot) && opened != tree.Static.RealRoot,
                $"'{Encoding.UTF8.GetString(target)}' opened {opened}, outside {tree.Static.RealRoot}");
            Require(size >= 0, $"size {size}");
        }
        finally
        {
            LibC.CloseQuietly(fd);
        }
    }

    private static bool IsBeneath(string path, string root) =>
        path == root || path.StartsWith(root + "/", StringComparison.Ordinal);

    /// <summary>A served root with files, an index, links that stay inside and links that leave, next to a file
    /// that must never be served.</summary>
    private sealed class ServedTree : IDisposable
    {
        private readonly string _top = Path.Combine(Path.GetTempPath(), $"iomux-fuzz-{Environment.ProcessId}-{Guid.NewGuid():N}");

        public ServedTree()
        {
            Root = Path.Combine(_top, "www");
            Directory.CreateDirectory(Path.Combine(Root, "docs", "deep"));
            File.WriteAllText(Path.Combine(_top, "secret.txt"), "outside the root\n");
            File.WriteAllText(Path.Combine(Root, "index.html"), "<p>root</p>\n");
            File.WriteAllText(Path.Combine(Root, "a.txt"), "a\n");
            File.WriteAllText(Path.Combine(Root, "docs", "index.html"), "<p>docs</p>\n");
            File.WriteAllText(Path.Combine(Root, "docs", "deep", "b.css"), "b{}\n");
            File.CreateSymbolicLink(Path.Combine(Root, "out"), "../secret.txt");
            File.CreateSymbolicLink(Path.Combine(Root, "up"), "..");
            File.CreateSymbolicLink(Path.Combine(Root, "abs"), Path.Combine(_top, "secret.txt"));
            File.CreateSymbolicLink(Path.Combine(Root, "in"), "docs");
            File.CreateSymbolicLink(Path.Combine(Root, "absin"), Path.Combine(Root, "a.txt"));
            Static = new StaticRoot(Root);
            Root = Path.GetFullPath(Root);
        }

        public string Root { get; }

        public StaticRoot Static { get; }

        public void Dispose()
        {
            Static.Dispose();
            Directory.Delete(_top, recursive: true);
        }
    }

    // ---- timespan: TimeSpans.Parse ----

    private static void TimeSpanText(ReadOnlySpan<byte> input)
    {
        string text = Encoding.UTF8.GetString(input);
        TimeSpan? span;
        try
        {
            span = TimeSpans.Parse(text);
        }
        catch (FormatException)
        {
            return; // documented
        }
        if (span is null)
            Require(text.Trim() == "infinity", $"'{text}' parsed as infinity");
        else
            Require(span.Value >= TimeSpan.Zero, $"'{text}' parsed as {span.Value}");
    }

    // ---- listen-fds: SocketActivation.Parse(LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES) ----

    /// <summary>The pid the fuzz inputs name (the seeds and the dictionary spell it).</summary>
    private const int ListenPid = 4242;

    /// <summary>How many descriptors the fake passes: 3, 4 and 5 are listening sockets, anything above is not.</summary>
    private const int PassedDescriptors = 3;

    private static void ListenFds(ReadOnlySpan<byte> input)
    {
        // Three variables, one a line; a missing line is an unset variable.
        var parts = Encoding.UTF8.GetString(input).Split('\n', 3);
        string? pidText = parts[0];
        string? countText = parts.Length > 1 ? parts[1] : null;
        string? namesText = parts.Length > 2 ? parts[2] : null;
        int prepared = 0;
        IReadOnlyList<SocketActivation.ListenSocket> sockets;
        try
        {
            sockets = SocketActivation.Parse(pidText, countText, namesText, ListenPid, fd =>
            {
                Require(fd == SocketActivation.FirstDescriptor + prepared, $"prepared fd {fd} out of order");
                if (fd >= SocketActivation.FirstDescriptor + PassedDescriptors)
                    throw new SocketActivationException($"fd {fd}: not a socket (EBADF).");
                prepared++;
            });
        }
        catch (SocketActivationException)
        {
            return; // documented
        }
        Require(sockets.Count >= 1 && sockets.Count == prepared, $"{sockets.Count} sockets after preparing {prepared}");
        for (int i = 0; i < sockets.Count; i++)
        {
            Require(sockets[i].Descriptor == SocketActivation.FirstDescriptor + i, $"socket {i} is fd {sockets[i].Descriptor}");
            Require(!string.IsNullOrEmpty(sockets[i].Name) && !sockets[i].Name.Contains(':'), $"socket {i} named '{sockets[i].Name}'");
        }
    }

    // ---- backend-target: BackendTarget.Parse ----

    private static void BackendTargetText(ReadOnlySpan<byte> input)
    {
        string text = Encoding.UTF8.GetString(input);
        BackendTarget target;
        try
        {
            target = BackendTarget.Parse(text);
        }
        catch (FormatException)
        {
            return; // documented
        }
        Require(target.Text == text, "Text is not the input");
        Require(target.Host is null != target.FixedEndpoint is null, $"'{text}': both or neither of a host name and an endpoint");
        switch (target.FixedEndpoint)
        {
            case UnixDomainSocketEndPoint:
                Require(target.Port == 0, $"'{text}': a socket path with port {target.Port}");
                break;
            case IPEndPoint ip:
                Require(ip.Port == target.Port && target.Port is >= 1 and <= 65535, $"'{text}': port {target.Port}, endpoint {ip}");
                break;
            case null:
                Require(!string.IsNullOrEmpty(target.Host) && target.Port is >= 1 and <= 65535, $"'{text}': host '{target.Host}' port {target.Port}");
                break;
            default:
                throw new PropertyViolationException($"'{text}': endpoint of type {target.FixedEndpoint.GetType()}");
        }
    }

    // ---- kevent-translation and port-translation: the backends over a scripted kernel ----

    private void KeventTranslation(byte[] data)
    {
        var input = new FuzzInput(data);
        var platform = KqueueProfile.All[input.Byte() % KqueueProfile.All.Count];
        var system = new ScriptedKqueue(platform, input);
        KqueueBackend backend;
        try
        {
            backend = new KqueueBackend(system);
        }
        catch (PosixException)
        {
            return;
        }
        using (backend)
            Exercise(backend, input, platform.Except is not null, emulatedEdge: false);
    }

    private void PortTranslation(byte[] data)
    {
        var input = new FuzzInput(data);
        var bits = input.Byte() % 2 == 0 ? PortPollBits.Illumos : PortPollBits.Solaris;
        using var backend = new EventPortsBackend(new ScriptedEventPorts(bits, input));
        Exercise(backend, input, supportsPriority: true, emulatedEdge: true);
    }

    private sealed class Registration(int descriptor, Interest interest, TriggerMode mode)
    {
        public int Descriptor { get; } = descriptor;
        public Interest Interest { get; set; } = interest;
        public TriggerMode Mode { get; set; } = mode;
        public bool OneshotReported { get; set; }
        /// <summary>Edge directions reported and not re-armed since (Rearm or Modify).</summary>
        public Interest EdgeReported { get; set; }
    }

    /// <summary>Registers some of the real descriptors as the input says, then alternates changes and waits, and
    /// checks every wait's events against what is registered. PosixException is the backends' documented error.
    /// Where edge mode is emulated (event ports) the backend, not the kernel, owes the edge property: a direction
    /// reported once comes back only after Rearm or Modify, whatever the kernel says.</summary>
    private void Exercise(PollerBackend backend, FuzzInput input, bool supportsPriority, bool emulatedEdge)
    {
        var descriptors = _descriptors.Value.All;
        var live = new Dictionary<ulong, Registration>();
        ulong nextToken = 100;
        try
        {
            int count = 1 + input.Byte() % descriptors.Length;
            for (int i = 0; i < count; i++)
            {
                var (interest, mode) = Spec(input.Byte(), supportsPriority);
                backend.Add(descriptors[i], nextToken, interest, mode);
                live[nextToken++] = new Registration(descriptors[i], interest, mode);
            }
            var events = new PollEvent[8];
            int rounds = 1 + input.Byte() % 6;
            for (int round = 0; round < rounds && !input.Exhausted; round++)
            {
                byte action = input.Byte();
                if (live.Count > 0 && action % 4 == 0)
                {
                    var (token, registration) = live.ElementAt(action / 4 % live.Count);
                    backend.Delete(registration.Descriptor);
                    live.Remove(token);
                }
                else if (live.Count > 0 && action % 4 == 1)
                {
                    // A new token and mode: the old token must not be reported after this.
                    var (token, registration) = live.ElementAt(action / 4 % live.Count);
                    var (interest, mode) = Spec(input.Byte(), supportsPriority);
                    live.Remove(token);
                    backend.Modify(registration.Descriptor, nextToken, interest, mode);
                    registration.Interest = interest;
                    registration.Mode = mode;
                    registration.OneshotReported = false;
                    registration.EdgeReported = Interest.None;
                    live[nextToken++] = registration;
                }
                else if (live.Count > 0 && action % 4 == 2)
                {
                    // The consumer hit would-block in some directions.
                    var registration = live.ElementAt(action / 4 % live.Count).Value;
                    var directions = (Interest)(input.Byte() % 8);
                    backend.NotifyWouldBlock(registration.Descriptor, directions);
                    registration.EdgeReported &= ~directions;
                }
                var batch = events.AsSpan(0, 1 + input.Byte() % events.Length);
                int n = backend.Wait(batch, TimeSpan.Zero);
                Check(batch, n, live, emulatedEdge);
            }
        }
        catch (PosixException)
        {
            // documented: the scripted kernel answered an errno
        }
    }

    private static (Interest, TriggerMode) Spec(byte b, bool supportsPriority)
    {
        var interest = (Interest)(1 + b % 7);
        if (!supportsPriority)
            interest &= ~Interest.Priority;
        if (interest == Interest.None)
            interest = Interest.Readable;
        return (interest, (TriggerMode)(b / 7 % 3));
    }

    private static void Check(ReadOnlySpan<PollEvent> batch, int n, Dictionary<ulong, Registration> live, bool emulatedEdge)
    {
        Require(n >= 0 && n <= batch.Length, $"Wait returned {n} for room for {batch.Length}");
        var seen = new HashSet<ulong>();
        foreach (var e in batch[..n])
        {
            Require(seen.Add(e.Token), $"two events for token {e.Token} in one wait");
            Require(live.TryGetValue(e.Token, out var registration), $"event for token {e.Token}, which is not registered");
            Require(e.Readiness != Readiness.None, $"empty event for token {e.Token}");
            var interest = registration!.Interest;
            Require((e.Readiness & (Readiness.Readable | Readiness.ReadHangup)) == 0 || (interest & Interest.Readable) != 0,
                $"token {e.Token} watches {interest} and got {e.Readiness}");
            Require((e.Readiness & Readiness.Writable) == 0 || (interest & Interest.Writable) != 0,
                $"token {e.Token} watches {interest} and got {e.Readiness}");
            Require((e.Readiness & Readiness.Priority) == 0 || (interest & Interest.Priority) != 0,
                $"token {e.Token} watches {interest} and got {e.Readiness}");
            Require(!registration.OneshotReported, $"oneshot token {e.Token} reported again without a re-arm");
            if (registration.Mode == TriggerMode.Oneshot)
                registration.OneshotReported = true;
            if (emulatedEdge && registration.Mode == TriggerMode.Edge)
            {
                var directions = (Interest)(e.Readiness & (Readiness.Readable | Readiness.Writable | Readiness.Priority));
                Require((directions & registration.EdgeReported) == 0,
                    $"edge token {e.Token} reported {directions & registration.EdgeReported} again without a re-arm");
                registration.EdgeReported |= directions;
            }
        }
    }

    /// <summary>Real descriptors for the backends to register (they probe the kind with fstat): a pipe's two
    /// ends and a connected stream socket pair, all non-blocking (hangup derivation peeks at them).</summary>
    private sealed unsafe class Descriptors : IDisposable
    {
        public Descriptors()
        {
            LibC.CreateNonBlockingPipe(out int readEnd, out int writeEnd);
            int* pair = stackalloc int[2];
            if (LibC.socketpair(1 /* AF_UNIX */, 1 /* SOCK_STREAM */, 0, pair) != 0)
                throw Errno.Fail("socketpair");
            LibC.SetNonBlockingCloseOnExec(pair[0]);
            LibC.SetNonBlockingCloseOnExec(pair[1]);
            All = [readEnd, writeEnd, pair[0], pair[1]];
        }

        public int[] All { get; }

        public void Dispose()
        {
            foreach (int fd in All)
                LibC.CloseQuietly(fd);
        }
    }
}

/// <summary>The fuzz input read front to back; past its end every read is 0 (the kernel then has nothing to say).</summary>
internal sealed class FuzzInput(byte[] data)
{
    private int _position;

    public bool Exhausted => _position >= data.Length;

    public byte Byte() => _position < data.Length ? data[_position++] : (byte)0;

    public ushort UShort() => (ushort)(Byte() | Byte() << 8);

    public uint UInt() => (uint)(UShort() | UShort() << 16);

    public ulong ULong() => UInt() | (ulong)UInt() << 32;

    /// <summary>A kernel-data value: mostly one the backend handed to the kernel (so translation reaches a live
    /// registration), sometimes the same slot with another generation (a stale event), the wake's value, or any.</summary>
    public ulong KernelData(IReadOnlyList<ulong> given)
    {
        byte b = Byte();
        if (given.Count > 0 && b < 0xB0)
            return given[b % given.Count];
        if (given.Count > 0 && b < 0xD8)
            return given[b % given.Count] + (1UL << 32);
        if (b < 0xF0)
            return ulong.MaxValue; // DescriptorTable.WakeData
        return ULong();
    }
}

/// <summary>kevent(2) as a script: every change is accepted (an EV_RECEIPT entry with data 0), and each wait
/// returns records drawn from the input: filters of the platform (or any number), any flags, fflags and data,
/// and udata naming registered slots, stale slots, the wake, or anything.</summary>
internal sealed class ScriptedKqueue(KqueueProfile platform, FuzzInput input) : IKqueueSystem
{
    private const int QueueDescriptor = 1_000_000; // never opened: the backend only hands it back
    private readonly List<ulong> _given = [];

    public KqueueProfile Profile => platform;

    public OsCalls Os => OsCalls.Native; // the descriptors are this host's

    public int Create() => QueueDescriptor;

    public void Close(int kq)
    {
    }

    public int Kevent(int kq, ReadOnlySpan<KEvent> changes, Span<KEvent> events, TimeSpan? timeout)
    {
        if (kq != QueueDescriptor)
            throw new PropertyViolationException($"kevent on {kq}, not the queue");
        foreach (var change in changes)
            if ((change.Flags & EV_ADD) != 0 && !_given.Contains(change.UData))
                _given.Add(change.UData);
        if (!changes.IsEmpty)
        {
            int receipts = Math.Min(changes.Length, events.Length);
            for (int i = 0; i < receipts; i++)
                events[i] = changes[i] with { Flags = (ushort)(changes[i].Flags | EV_ERROR), Data = 0 };
            return receipts;
        }
        if (events.IsEmpty)
            return 0;
        byte first = input.Byte();
        if (first >= 0xF8)
            return -(first % 2 == 0 ? Errno.EINTR : Errno.EBADF);
        int count = Math.Min(first % 9, events.Length);
        for (int i = 0; i < count; i++)
            events[i] = Record();
        return count;
    }

    private KEvent Record()
    {
        byte shape = input.Byte();
        short filter = (shape & 7) switch
        {
            0 or 1 or 2 => platform.Read,
            3 or 4 => platform.Write,
            5 => platform.Except ?? platform.Read,
            6 => platform.User ?? platform.Write,
            _ => (short)input.UShort(),
        };
        ushort flags = (shape & 0x08) != 0 ? input.UShort() : (shape & 0x10) != 0 ? EV_EOF : (ushort)0;
        uint fflags = (shape & 0x20) != 0 ? input.UInt() : 0;
        long data = (shape & 0x40) != 0 ? (long)input.ULong() : input.Byte();
        return new KEvent { Ident = input.Byte(), Filter = filter, Flags = flags, FFlags = fflags, Data = data, UData = input.KernelData(_given) };
    }
}

/// <summary>The event-port calls as a script: associations are accepted, and each port_getn returns records drawn
/// from the input (poll bits in any combination, PORT_SOURCE_FD mostly, portev_user naming registered slots,
/// stale slots, the wake, or anything), or fails with EINTR (nothing retrieved) or ETIME (some retrieved).
/// Like the kernel, it delivers an association at most once per port_getn: a port dissociates the descriptor
/// when it queues the event, so the same portev_user cannot come twice in one batch.</summary>
internal sealed class ScriptedEventPorts(PortPollBits bits, FuzzInput input) : IEventPortSystem
{
    private const int PortDescriptor = 1_000_001;
    private readonly List<ulong> _given = [];
    private readonly Dictionary<ulong, int> _descriptorOf = [];

    public PortPollBits Bits => bits;

    public OsCalls Os => OsCalls.Native; // the descriptors are this host's

    public int Create() => PortDescriptor;

    public int Associate(int port, int fd, int events, ulong user)
    {
        if (port != PortDescriptor)
            throw new PropertyViolationException($"port_associate on {port}, not the port");
        if (!_given.Contains(user))
            _given.Add(user);
        _descriptorOf[user] = fd;
        return 0;
    }

    public int Dissociate(int port, int fd) => 0;

    public int Send(int port, int events, ulong user) => 0;

    public void Close(int port)
    {
    }

    public int GetN(int port, Span<PortEvent> events, ref uint nget, TimeSpan? timeout)
    {
        byte first = input.Byte();
        if (first >= 0xF8)
            return -Errno.EINTR; // nget left as passed, nothing written
        if (first >= 0xF0)
            return -Errno.EBADF;
        int wanted = Math.Min(first % 9, events.Length);
        var delivered = new HashSet<ulong>();
        int count = 0;
        for (int i = 0; i < wanted; i++)
        {
            var record = Record();
            if (record.Source == PortSource.Fd && !delivered.Add(record.User))
                continue;
            events[count++] = record;
        }
        nget = (uint)count;
        return (first & 0x80) != 0 ? -Errno.ETIME : 0;
    }

    private PortEvent Record()
    {
        byte shape = input.Byte();
        int mask = ((shape & 0x01) != 0 ? bits.In : 0) | ((shape & 0x02) != 0 ? bits.Out : 0)
            | ((shape & 0x04) != 0 ? bits.Pri : 0) | ((shape & 0x08) != 0 ? bits.Err : 0)
            | ((shape & 0x10) != 0 ? bits.Hup : 0) | ((shape & 0x20) != 0 ? bits.Nval : 0)
            | ((shape & 0x40) != 0 ? bits.RdHup : 0) | ((shape & 0x80) != 0 ? (int)input.UInt() : 0);
        byte source = input.Byte();
        ushort kind = (source % 8) switch { < 6 => PortSource.Fd, 6 => PortSource.User, _ => input.UShort() };
        ulong user = input.KernelData(_given);
        ulong target = _descriptorOf.TryGetValue(user, out int fd) ? (ulong)fd : input.Byte();
        return new PortEvent { Events = mask, Source = kind, Object = target, User = user };
    }
}
