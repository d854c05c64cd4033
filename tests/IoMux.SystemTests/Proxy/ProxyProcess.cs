using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace IoMux.Tests.Proxy;

/// <summary>A real iomux-socket-proxyd process, started the way a service manager starts it
/// (systemd-socket-activate passes the listening socket as fd 3 and execs the proxy on the first connection)
/// or with its --listen extension. Collects stderr; counts the process's sockets and pipes through /proc.</summary>
internal sealed partial class ProxyProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();
    // Set at end of stream on stderr and stdout: the log is complete once both are, after the process exited.
    private readonly TaskCompletionSource _stderrEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stdoutEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public static string ProxyPath => Path.Combine(AppContext.BaseDirectory, "iomux-socket-proxyd");

    private ProxyProcess(string fileName, IEnumerable<string> arguments, IDictionary<string, string>? environment, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo(fileName) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        if (workingDirectory is not null)
            start.WorkingDirectory = workingDirectory;
        foreach (var argument in arguments)
            start.ArgumentList.Add(argument);
        if (environment is not null)
            foreach (var (key, value) in environment)
                start.Environment[key] = value;
        _process = Process.Start(start)!;
        _process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); else _stderrEnded.TrySetResult(); };
        _process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_log) _log.AppendLine(e.Data); else _stdoutEnded.TrySetResult(); };
        _process.BeginErrorReadLine();
        _process.BeginOutputReadLine();
    }

    /// <summary>The address clients connect to.</summary>
    public IPEndPoint Endpoint { get; private init; } = null!;

    public int Pid => _process.Id;

    public string Log { get { lock (_log) return _log.ToString(); } }

    /// <summary><c>systemd-socket-activate -l 127.0.0.1:PORT iomux-socket-proxyd ARGS</c>: the listening socket is
    /// bound at once; the proxy itself starts with the first connection.</summary>
    public static ProxyProcess Activated(params string[] proxyArguments) => ActivatedWith(null, proxyArguments);

    public static ProxyProcess ActivatedWith(IDictionary<string, string>? environment, params string[] proxyArguments) =>
        ActivatedWithOptions(environment, [], proxyArguments);

    /// <summary>Activation with extra systemd-socket-activate options (e.g. --fdname).</summary>
    public static ProxyProcess ActivatedWithOptions(IDictionary<string, string>? environment, string[] activatorOptions, params string[] proxyArguments) =>
        ActivatedBinary(ProxyPath, environment, activatorOptions, null, proxyArguments);

    /// <summary>Activation of <paramref name="binary"/> (this proxy or systemd-socket-proxyd, which the differential
    /// tests start the same way), in <paramref name="workingDirectory"/> (null: the test's).</summary>
    public static ProxyProcess ActivatedBinary(string binary, IDictionary<string, string>? environment, string[] activatorOptions,
        string? workingDirectory, params string[] proxyArguments)
    {
        TestProcesses.RequireTool("systemd-socket-activate", "it starts the proxy as systemd would");
        var port = FreePort();
        // systemd-socket-activate passes on only the variables named with -E (as a unit's Environment= would).
        var passed = (environment ?? new Dictionary<string, string>()).SelectMany(pair => new[] { "-E", $"{pair.Key}={pair.Value}" });
        var proxy = new ProxyProcess("systemd-socket-activate", ["-l", $"127.0.0.1:{port}", .. activatorOptions, .. passed, binary, .. proxyArguments], null, workingDirectory)
        {
            Endpoint = new IPEndPoint(IPAddress.Loopback, port),
        };
        proxy.WaitForLog("Listening on", TimeSpan.FromSeconds(20));
        return proxy;
    }

    /// <summary>The proxy binding its own socket (--listen), already serving when this returns.</summary>
    public static ProxyProcess Listening(params string[] proxyArguments)
    {
        var port = FreePort();
        var proxy = new ProxyProcess(ProxyPath, ["--listen", $"127.0.0.1:{port}", .. proxyArguments], null)
        {
            Endpoint = new IPEndPoint(IPAddress.Loopback, port),
        };
        proxy.WaitForLog("Relaying", TimeSpan.FromSeconds(20));
        return proxy;
    }

    /// <summary>Any program (a shell that passes a socket on, say) whose clients connect to <paramref name="endpoint"/>;
    /// returns at once.</summary>
    public static ProxyProcess Started(string fileName, IEnumerable<string> arguments, IDictionary<string, string>? environment, IPEndPoint endpoint) =>
        new(fileName, arguments, environment) { Endpoint = endpoint };

    /// <summary>Runs the proxy binary to completion (command-line tests).</summary>
    public static (int ExitCode, string Output) RunToExit(IDictionary<string, string>? environment, params string[] arguments) =>
        RunBinaryToExit(ProxyPath, environment, arguments);

    /// <summary>Runs <paramref name="binary"/> (this proxy or systemd-socket-proxyd) to completion.</summary>
    public static (int ExitCode, string Output) RunBinaryToExit(string binary, IDictionary<string, string>? environment, params string[] arguments)
    {
        using var proxy = new ProxyProcess(binary, arguments, environment);
        if (!proxy.WaitForExit(TimeSpan.FromSeconds(20)))
            throw new TimeoutException("the proxy did not exit");
        return (proxy._process.ExitCode, proxy.Log);
    }

    public static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    public void WaitForLog(string text, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (!Log.Contains(text, StringComparison.Ordinal))
        {
            if (_process.HasExited && !Log.Contains(text, StringComparison.Ordinal))
            {
                WaitForLogEnd();
                if (!Log.Contains(text, StringComparison.Ordinal))
                    throw new InvalidOperationException($"the proxy exited ({_process.ExitCode}) before logging '{text}':\n{Log}");
            }
            if (deadline.Elapsed > timeout)
                throw new TimeoutException($"'{text}' not logged within {timeout}:\n{Log}");
            Thread.Sleep(20);
        }
    }

    public int CountOccurrences(string text)
    {
        var log = Log;
        int count = 0;
        for (int at = log.IndexOf(text, StringComparison.Ordinal); at >= 0; at = log.IndexOf(text, at + 1, StringComparison.Ordinal))
            count++;
        return count;
    }

    public Socket Connect()
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect(Endpoint);
        return socket;
    }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    public bool WaitForExit(TimeSpan timeout)
    {
        if (!_process.WaitForExit(timeout))
            return false;
        WaitForLogEnd();
        return true;
    }

    /// <summary>After the exit: the last lines of the redirected streams, bounded (Process.WaitForExit() without a
    /// timeout would wait for them forever if something had inherited the pipes).</summary>
    private void WaitForLogEnd()
    {
        if (!Task.WaitAll([_stderrEnded.Task, _stdoutEnded.Task], TimeSpan.FromSeconds(10)))
            throw new TimeoutException($"the proxy exited but its output did not end within 10 s:\n{Log}");
    }

    public void Signal(int signal)
    {
        if (TestProcesses.Signal(_process.Id, signal) != 0)
            throw new InvalidOperationException($"kill({_process.Id}, {signal}) failed");
    }

    public const int SIGTERM = 15, SIGINT = 2;

    /// <summary>Sockets and pipes the proxy holds now (what a leak would grow).</summary>
    public (int Sockets, int Pipes) CountDescriptors()
    {
        int sockets = 0, pipes = 0;
        foreach (var entry in Directory.GetFiles($"/proc/{_process.Id}/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(entry).LinkTarget;
            }
            catch (IOException)
            {
                continue; // closed while listing
            }
            if (target?.StartsWith("socket:", StringComparison.Ordinal) == true)
                sockets++;
            else if (target?.StartsWith("pipe:", StringComparison.Ordinal) == true)
                pipes++;
        }
        return (sockets, pipes);
    }

    /// <summary>One echoed byte through a connection that then closes (with activation, this first connection is
    /// what starts the proxy), then the proxy's socket and pipe count once it is steady: what a leak test
    /// compares against. The runtime keeps sockets and pipes of its own, so the baseline is measured, not assumed.</summary>
    public async Task<(int Sockets, int Pipes)> WarmUpAndCountDescriptors(CancellationToken cancel)
    {
        using (var socket = Connect())
        {
            await TestBackend.SendAll(socket, new byte[] { 42 }, cancel);
            socket.Shutdown(SocketShutdown.Send);
            var (bytes, _) = await TestBackend.ReceiveAll(socket, cancel);
            if (bytes != 1)
                throw new InvalidOperationException($"warm-up echo returned {bytes} bytes");
        }
        var previous = CountDescriptors();
        for (int stable = 0; stable < 3;)
        {
            await Task.Delay(100, cancel);
            var now = CountDescriptors();
            stable = now == previous ? stable + 1 : 0;
            previous = now;
        }
        return previous;
    }

    /// <summary>CPU time the process has used, in clock ticks (1/100 s).</summary>
    public long CpuTicks() => TestProcesses.CpuTicks(_process.Id);

    /// <summary>Waits until <paramref name="condition"/> holds, polling; false on timeout.</summary>
    public static bool Eventually(Func<bool> condition, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (condition())
                return true;
            Thread.Sleep(20);
        }
        return condition();
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}
