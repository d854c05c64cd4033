using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using IoMux.Tests.Proxy;

namespace IoMux.Tests.Web;

/// <summary>Hostile requests over raw TCP to `iomux serve` and to nginx side by side, both serving the same
/// directory with a secret file just outside it. For IoMux every row asserts the exact answer, that the secret never
/// comes back, that nothing hangs (every read is bounded), that a normal request is still served afterwards, and
/// that the process's RSS stays bounded over the whole table. nginx is the reference column: where the two differ,
/// the row says why IoMux's answer is the right one. The table is printed so that
/// docs/reliability/hostile-requests.md can be refreshed from a run.</summary>
[NonParallelizable]
[Category("System")]
public sealed class HostileRequestTests
{
    private const string PublicText = "public file inside the root\n";
    private const string SecretText = "TOP-SECRET-7f3a9c outside the root\n";

    /// <summary>How long one exchange may take before it counts as "timeout" (a hang).</summary>
    private static readonly TimeSpan ExchangeTimeout = TimeSpan.FromSeconds(3);

    /// <summary>One row: what is sent, what IoMux must answer, and why that answer is right where nginx differs.</summary>
    private sealed record Row(string Request, byte[] Bytes, string IoMux, string Why);

    private static byte[] Bytes(string text) => Encoding.Latin1.GetBytes(text); // Latin-1 keeps \0 and \xc0 as single bytes

    private static Row Get(string target, string ioMux, string why) =>
        new($"`GET {target}`", Bytes($"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n"), ioMux, why);

    private static IEnumerable<Row> Rows()
    {
        yield return new("Content-Length and Transfer-Encoding together",
            Bytes("POST /file.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), "405",
            "RFC 9112 §6.1 lets a server reject CL+TE and requires closing after; a static file takes no POST whatever its framing, so 405 (RFC 9110 §15.5.6, checked before the content) and close, the content unread");
        yield return new("two different Content-Lengths",
            Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"), "400",
            "RFC 9112 §6.3 (5): differing lengths are an unrecoverable framing error, 400 and close");
        yield return new("obs-fold header line",
            Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\n\r\n"), "400",
            "RFC 9112 §5.2: a server MUST reject obs-fold with 400 or replace it with SP; IoMux rejects");
        yield return new("bare LF line endings",
            Bytes("GET /file.txt HTTP/1.1\nHost: localhost\n\n"), "200",
            "RFC 9112 §2.2: a recipient MAY recognize a single LF as a line terminator");
        yield return new("whitespace between a field name and its colon",
            Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\nX-A : b\r\n\r\n"), "400",
            "RFC 9112 §5.1: a server MUST reject it with 400");
        yield return new("NUL in a header name",
            Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\nX-A\0B: c\r\n\r\n"), "400",
            "RFC 9110 §5.1: a field name is a token; RFC 9112 §2.2: a request that does not match the grammar SHOULD get 400");
        yield return new("NUL in a header value",
            Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\nX-A: b\0c\r\n\r\n"), "400",
            "RFC 9110 §5.5: NUL in a field value is invalid and dangerous: reject or replace with SP; IoMux rejects");
        yield return new("control byte 0x01 in a header name",
            Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\nX-A\u0001B: c\r\n\r\n"), "400",
            "RFC 9110 §5.1: a field name is a token, and 0x01 is not a tchar: RFC 9112 §2.2 SHOULD answer 400");
        yield return new("control byte 0x01 in a header value",
            Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\nX-A: b\u0001c\r\n\r\n"), "400",
            "RFC 9110 §5.5: field-vchar excludes CTLs other than HTAB, so the line does not match the grammar: 400 (RFC 9112 §2.2); nginx passes the byte on");
        yield return new("request line of 64 KiB",
            Bytes($"GET /{new string('a', 64 * 1024)} HTTP/1.1\r\nHost: localhost\r\n\r\n"), "414",
            "RFC 9110 §15.5.15");
        yield return new("one header of 64 KiB",
            Bytes($"GET /file.txt HTTP/1.1\r\nHost: localhost\r\nX-Long: {new string('a', 64 * 1024)}\r\n\r\n"), "431",
            "RFC 6585 §5: 431 is the status for header fields too large; nginx answers its internal 494 as 400");
        yield return new("10 000 header fields",
            Bytes($"GET /file.txt HTTP/1.1\r\nHost: localhost\r\n{string.Concat(Enumerable.Range(0, 10_000).Select(i => $"X-{i}: v\r\n"))}\r\n"), "431",
            "RFC 6585 §5: 431 when the header section is too large (IoMux: more than 100 fields or 16 KiB)");
        yield return new("absolute-form target `GET http://localhost/file.txt`",
            Bytes("GET http://localhost/file.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"), "200",
            "RFC 9112 §3.2.2: a server MUST accept the absolute-form");
        yield return new("absolute-form target `GET http://localhost/../secret.txt`",
            Bytes("GET http://localhost/../secret.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"), "400",
            "climbs above the root, refused like the origin-form");
        yield return new("authority-form `CONNECT localhost:443`",
            Bytes("CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n"), "400",
            "RFC 9112 §3.2.3: the authority-form is for CONNECT to a proxy; an origin server takes origin- and absolute-form targets");
        yield return Get("/../secret.txt", "400", "");
        yield return Get("/%2e%2e/secret.txt", "400", "");
        yield return Get("/%2E%2E%2Fsecret.txt", "400", "");
        yield return Get("/..%2fsecret.txt", "400", "");
        yield return Get("/%252e%252e/secret.txt", "404", "decoded once (RFC 3986 §2.4): a directory literally named %2e%2e, which does not exist");
        yield return Get("/..\\secret.txt", "404", "backslash is not a path separator on Unix: a file named `..\\secret.txt`, which does not exist");
        yield return Get("/..%5csecret.txt", "404", "the same with the backslash percent-encoded");
        yield return Get("/%c0%ae%c0%ae/secret.txt", "400",
            "overlong UTF-8 for '.' is invalid (RFC 3629 §3, §10); IoMux refuses invalid UTF-8 before any lookup (400, RFC 9110 §15.5.1) where nginx looks up the raw bytes");
        yield return Get("/./../secret.txt", "400", "");
        yield return Get("/sub/../../secret.txt", "400", "");
        yield return Get("/..", "400", "");
        yield return Get("/sub/..", "200", "trailing `/..` inside the root: the root's index.html");
        yield return Get("/link-to-secret.txt", "404",
            "a symbolic link inside the root to the secret outside it: IoMux never follows a link out of the root (openat2 RESOLVE_BENEATH); nginx follows links by default (disable_symlinks off)");
        yield return new("GET with a 5-byte body",
            Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello"), "413",
            "RFC 9110 §9.3.1: content in a GET has no defined semantics and may be rejected (smuggling); IoMux takes no content: 413 (RFC 9110 §15.5.14) and close");
        yield return new("HTTP/1.0 without Host",
            Bytes("GET /file.txt HTTP/1.0\r\n\r\n"), "200", "");
        yield return new("HTTP/1.1 without Host",
            Bytes("GET /file.txt HTTP/1.1\r\n\r\n"), "400", "RFC 9112 §3.2: MUST answer 400");
        yield return new("HTTP/2 connection preface",
            Bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), "400",
            "RFC 9113 §3.4: the preface is built to fail on HTTP/1.1 servers; asterisk-form is only for OPTIONS (RFC 9112 §3.2.4)");
        yield return new("1 000 empty lines before the request",
            Bytes(string.Concat(Enumerable.Repeat("\r\n", 1000)) + "GET /file.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"), "200",
            "RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request-line");
        yield return new("32 768 empty lines (64 KiB) before the request",
            Bytes(string.Concat(Enumerable.Repeat("\r\n", 32 * 1024)) + "GET /file.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"), "400",
            "RFC 9112 §2.2 asks for at least one; IoMux ignores empty lines up to its request-line limit (8 KiB) and answers 400 past it, so a flood cannot hold a connection without end");
    }

    [Test, CancelAfter(60_000)]
    public async Task HostileRequestsGetTheirAnswerAndNeverTheSecret(CancellationToken cancellation)
    {
        var directory = Directory.CreateTempSubdirectory("iomux-hostile-").FullName;
        var root = Path.Combine(directory, "www");
        Directory.CreateDirectory(Path.Combine(root, "sub"));
        File.WriteAllText(Path.Combine(root, "file.txt"), PublicText);
        File.WriteAllText(Path.Combine(root, "index.html"), "<p>index</p>\n");
        File.WriteAllText(Path.Combine(directory, "secret.txt"), SecretText);
        File.CreateSymbolicLink(Path.Combine(root, "link-to-secret.txt"), Path.Combine(directory, "secret.txt"));
        NginxServer? nginx = null;
        string nginxMissing = "";
        try
        {
            var binary = NginxServer.TryInstall(out nginxMissing);
            nginx = binary is null ? null : NginxServer.TryStart(binary, root, out nginxMissing);
            // One loop thread, so that "another client is served meanwhile" proves the slow client holds no loop.
            await ServerCommandTests.Run(["serve", root], port => RunTable(port, ServerCommandTests.CurrentServerPid, nginx?.Port, nginxMissing),
                threads: 1, cancellation: cancellation);
        }
        finally
        {
            nginx?.Dispose();
            Directory.Delete(directory, recursive: true);
        }
    }

    private static async Task RunTable(int ioMuxPort, int pid, int? nginxPort, string nginxMissing)
    {
        Assert.That(await NormalRequestServed(ioMuxPort), Is.True, "warm-up");
        long rssBefore = ResidentKiB(pid);
        var table = new List<(Row Row, string IoMux, string Nginx)>();
        var failures = new List<string>(); // collected so that a failing run still prints the whole table
        foreach (var row in Rows())
        {
            var ioMux = Exchange(ioMuxPort, row.Bytes);
            var reference = nginxPort is int port ? Exchange(port, row.Bytes) : Task.FromResult(new Answer("not run", []));
            await Task.WhenAll(ioMux, reference);
            table.Add((row, ioMux.Result.Verdict, reference.Result.Verdict));
            if (Encoding.Latin1.GetString(ioMux.Result.Received).Contains(SecretText.TrimEnd(), StringComparison.Ordinal))
                failures.Add($"{row.Request}: IoMux sent the secret");
            if (ioMux.Result.Verdict != row.IoMux)
                failures.Add($"{row.Request}: IoMux answered {ioMux.Result.Verdict}, expected {row.IoMux}");
            if (!await NormalRequestServed(ioMuxPort))
                failures.Add($"{row.Request}: no normal answer afterwards");
        }
        var drip = await SlowDrip(ioMuxPort, nginxPort, failures);
        table.Add(drip);
        if (drip.IoMux != drip.Row.IoMux)
            failures.Add($"{drip.Row.Request}: IoMux answered {drip.IoMux}, expected {drip.Row.IoMux}");
        if (!await NormalRequestServed(ioMuxPort))
            failures.Add("no normal answer after the slow drip");
        long growth = ResidentKiB(pid) - rssBefore;
        if (growth >= 50 * 1024)
            failures.Add($"IoMux's RSS grew by {growth} KiB (more than 50 MiB) over the table");
        foreach (var (row, ioMux, reference) in table)
            if (nginxPort is not null && ioMux != reference && row.Why == "")
                failures.Add($"{row.Request}: IoMux and nginx differ and the row does not say why");

        var text = new StringBuilder();
        text.AppendLine(nginxPort is null ? $"nginx: not run ({nginxMissing})" : "nginx: the Debian package, default settings but the root");
        text.AppendLine($"IoMux RSS growth over the table: {growth} KiB");
        text.AppendLine();
        text.AppendLine("| request | IoMux | nginx | why IoMux's answer is right |");
        text.AppendLine("|---|---|---|---|");
        foreach (var (row, ioMux, reference) in table)
            text.AppendLine($"| {row.Request} | {ioMux} | {reference} | {(row.Why == "" && ioMux == reference ? "same answer" : row.Why)} |");
        TestContext.Out.WriteLine(text.ToString());
        Assert.That(failures, Is.Empty);
    }

    /// <summary>A request sent one byte every 50 ms (about 2 s in all, inside the 10 s header timeout) to both servers
    /// at once; meanwhile another client must be answered at once by the same IoMux loop thread.</summary>
    private static async Task<(Row Row, string IoMux, string Nginx)> SlowDrip(int ioMuxPort, int? nginxPort, List<string> failures)
    {
        var row = new Row("slow drip: one byte every 50 ms (~2 s); another client is served meanwhile",
            Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\n\r\n"), "200", "");
        var ioMux = Drip(ioMuxPort, row.Bytes);
        var reference = nginxPort is int port ? Drip(port, row.Bytes) : Task.FromResult("not run");
        await Task.Delay(300); // the drip has begun
        var meanwhile = Stopwatch.StartNew();
        if (!await NormalRequestServed(ioMuxPort))
            failures.Add("slow drip: another client was not served meanwhile");
        else if (meanwhile.Elapsed > TimeSpan.FromSeconds(1))
            failures.Add($"slow drip: another client waited {meanwhile.Elapsed.TotalMilliseconds:F0} ms: the slow client held the loop");
        if (ioMux.IsCompleted)
            failures.Add("slow drip: the drip ended before the other client was served, so the check proved nothing");
        await Task.WhenAll(ioMux, reference);
        return (row, ioMux.Result, reference.Result);
    }

    private static async Task<string> Drip(int port, byte[] request)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, port);
        for (int i = 0; i < request.Length; i++) // bounded: 37 bytes, 50 ms apart
        {
            await socket.SendAsync(request.AsMemory(i, 1), SocketFlags.None);
            await Task.Delay(50);
        }
        var answer = await Receive(socket);
        return answer.Verdict;
    }

    private sealed record Answer(string Verdict, byte[] Received);

    /// <summary>Sends <paramref name="request"/> on a new connection and reads one response: its status code, or
    /// "closed" / "reset" / "timeout" when none came. Bounded by <see cref="ExchangeTimeout"/>.</summary>
    private static async Task<Answer> Exchange(int port, byte[] request)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, port);
        using (var sending = new CancellationTokenSource(ExchangeTimeout))
        {
            try
            {
                await socket.SendAsync(request, SocketFlags.None, sending.Token);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                // The server closed or stopped reading before taking it all: its answer, if any, is still to be read.
            }
        }
        return await Receive(socket);
    }

    private static async Task<Answer> Receive(Socket socket)
    {
        var received = new List<byte>();
        var buffer = new byte[16 * 1024];
        using var timeout = new CancellationTokenSource(ExchangeTimeout);
        string? ending = null;
        while (ending is null && !ResponseComplete(received)) // bounded by the timeout
        {
            try
            {
                int n = await socket.ReceiveAsync(buffer, SocketFlags.None, timeout.Token);
                if (n == 0)
                    ending = "closed";
                received.AddRange(buffer.AsSpan(0, n));
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
            {
                ending = "reset";
            }
            catch (OperationCanceledException)
            {
                ending = "timeout";
            }
        }
        var bytes = received.ToArray();
        string text = Encoding.Latin1.GetString(bytes);
        string verdict = text.StartsWith("HTTP/", StringComparison.Ordinal) && text.Length >= 12 ? text[9..12]
            : bytes.Length > 0 ? "not HTTP" : ending!;
        if (text.Contains(SecretText.TrimEnd(), StringComparison.Ordinal))
            verdict += " (the secret!)";
        return new Answer(verdict, bytes);
    }

    /// <summary>A head and as much body as its Content-Length announces have arrived.</summary>
    private static bool ResponseComplete(List<byte> received)
    {
        var text = Encoding.Latin1.GetString(received.ToArray());
        int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (end < 0)
            return false;
        var match = System.Text.RegularExpressions.Regex.Match(text[..end], @"\r\nContent-Length:\s*(\d+)", System.Text.RegularExpressions.RegexOptions.IgnoreCase);
        return !match.Success || received.Count - (end + 4) >= int.Parse(match.Groups[1].Value);
    }

    private static async Task<bool> NormalRequestServed(int port)
    {
        var answer = await Exchange(port, Bytes("GET /file.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"));
        return answer.Verdict == "200" && Encoding.Latin1.GetString(answer.Received).EndsWith(PublicText, StringComparison.Ordinal);
    }

    /// <summary>VmRSS from /proc/PID/status, in KiB.</summary>
    private static long ResidentKiB(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0]);
        throw new InvalidOperationException($"no VmRSS in /proc/{pid}/status");
    }
}
