using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using IoMux.Tests.Proxy;

namespace IoMux.Tests.Web;

/// <summary>The servers as the iomux command runs them: started, answering on loopback, stopped by SIGTERM with
/// exit code 0.</summary>
[Category("System")]
[NonParallelizable]
public sealed partial class ServerCommandTests
{
    [Test, CancelAfter(60_000)]
    public async Task IomuxHelloServeAndEchoAnswerAndStopOnSigterm(CancellationToken cancellation)
    {
        var root = Directory.CreateTempSubdirectory("iomux-serve-cmd-").FullName;
        File.WriteAllText(Path.Combine(root, "page.txt"), "served by iomux");
        try
        {
            await Run(["hello"], async port =>
            {
                using var http = new HttpClient();
                Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/"), Is.EqualTo("Hello, World!"));
            }, cancellation: cancellation);
            await Run(["serve", root], async port =>
            {
                using var http = new HttpClient();
                Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/page.txt"), Is.EqualTo("served by iomux"));
            }, cancellation: cancellation);
            await Run(["echo"], async port =>
            {
                using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await socket.ConnectAsync("127.0.0.1", port);
                await socket.SendAsync(Encoding.ASCII.GetBytes("ping"), SocketFlags.None);
                var buffer = new byte[4];
                int got = 0;
                while (got < 4)
                {
                    int n = await socket.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None, cancellation);
                    Assert.That(n, Is.GreaterThan(0), "the echo closed early");
                    got += n;
                }
                Assert.That(Encoding.ASCII.GetString(buffer), Is.EqualTo("ping"));
            }, cancellation: cancellation);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    /// <summary>Out of descriptors, the server stops polling its listener for a while instead of spinning on it,
    /// says so, and serves again once descriptors are available.</summary>
    [Test, CancelAfter(60_000)]
    public async Task OutOfDescriptorsTheServerPausesAcceptingWithoutSpinning(CancellationToken cancellation)
    {
        await Run(["hello"], async port =>
        {
            using var http = new HttpClient();
            Assert.That(await http.GetStringAsync($"http://127.0.0.1:{port}/"), Is.EqualTo("Hello, World!")); // warm
            int pid = s_current!.Id;
            int open = Directory.GetFiles($"/proc/{pid}/fd").Length;
            TestProcesses.SetDescriptorLimit(pid, open + 1);
            var clients = new List<Socket>();
            try
            {
                for (int i = 0; i < 4; i++)
                {
                    var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                    await client.ConnectAsync("127.0.0.1", port); // completes in the backlog
                    clients.Add(client);
                }
                await Task.Delay(500);
                long before = TestProcesses.CpuTicks(pid);
                await Task.Delay(1000);
                Assert.That(TestProcesses.CpuTicks(pid) - before, Is.LessThan(30), "the server spins while out of descriptors");
                lock (s_log)
                    Assert.That(s_log.ToString(), Does.Contain("accept: EMFILE"));
            }
            finally
            {
                foreach (var client in clients)
                    client.Dispose();
            }
            TestProcesses.SetDescriptorLimit(pid, open + 200);
            using var again = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
            Assert.That(await again.GetStringAsync($"http://127.0.0.1:{port}/"), Is.EqualTo("Hello, World!"));
        }, cancellation: cancellation);
    }

    /// <summary>Issue 13 item 5: a server never lets its own connections eat the descriptors the .NET runtime needs
    /// to start a thread (docs/reliability/descriptor-limit.md). With room for two connections above the reserve
    /// (plus the spares the server gives back while it pauses), twelve clients arrive: the server's descriptors
    /// never reach into the reserve, some clients wait in the backlog, the server does not spin, and every waiting
    /// client is served once the others are gone.</summary>
    [Test, CancelAfter(60_000)]
    public async Task TheServerKeepsTheRuntimesReserveOfDescriptors(CancellationToken cancellation)
    {
        await Run(["echo"], async port =>
        {
            var ping = Encoding.ASCII.GetBytes("ping");
            static async Task<bool> Echoed(Socket client, TimeSpan within)
            {
                var buffer = new byte[4];
                int got = 0;
                using var timeout = new CancellationTokenSource(within);
                try
                {
                    while (got < 4)
                        got += await client.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None, timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    return false;
                }
                return Encoding.ASCII.GetString(buffer) == "ping";
            }
            async Task<Socket> Connect()
            {
                var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                await client.ConnectAsync("127.0.0.1", port); // completes in the backlog if not accepted
                await client.SendAsync(ping, SocketFlags.None);
                return client;
            }

            using (var warm = await Connect())
                Assert.That(await Echoed(warm, TimeSpan.FromSeconds(10)), Is.True);
            int pid = s_current!.Id;
            // What the server holds at rest: the least of a few samples (the warm-up connection is being closed,
            // and the runtime opens a descriptor for a moment now and then).
            int open = int.MaxValue;
            for (int i = 0; i < 10; i++, await Task.Delay(50))
                open = Math.Min(open, Directory.GetFiles($"/proc/{pid}/fd").Length);
            int limit = open + 2 + IoMux.Interop.DescriptorBudget.Reserve;
            TestProcesses.SetDescriptorLimit(pid, limit);
            var clients = new List<Socket>();
            try
            {
                int most = 0;
                for (int i = 0; i < 12; i++)
                {
                    clients.Add(await Connect());
                    most = Math.Max(most, Directory.GetFiles($"/proc/{pid}/fd").Length);
                }
                long cpuBefore = TestProcesses.CpuTicks(pid);
                for (int i = 0; i < 50; i++, await Task.Delay(20))
                    most = Math.Max(most, Directory.GetFiles($"/proc/{pid}/fd").Length);
                Assert.That(TestProcesses.CpuTicks(pid) - cpuBefore, Is.LessThan(30), "the server spins while its budget is spent");
                // Each loop checks the budget before its accept without a lock, so the two loops may each take the
                // last place at once: one descriptor of slack per loop beyond the first.
                Assert.That(most, Is.LessThanOrEqualTo(limit - IoMux.Interop.DescriptorBudget.Reserve + 1), $"the server took descriptors from the runtime's reserve (at most {most}, limit {limit})");
                // Served clients get their echo (slowly on a loaded machine); waiting ones cannot while the squeeze
                // lasts, so a few seconds for all of them at once tells the two apart.
                var echoed = await Task.WhenAll(clients.Select(client => Echoed(client, TimeSpan.FromSeconds(3))));
                var served = clients.Where((_, i) => echoed[i]).ToList();
                Assert.That(served.Count, Is.InRange(2, 11), "two connections fit the budget, and not all twelve can");
                lock (s_log)
                    Assert.That(s_log.ToString(), Does.Contain("accept: EMFILE"));
                foreach (var client in served)
                {
                    clients.Remove(client);
                    client.Dispose();
                }
                // The waiting clients are served as places free up: each closes once served (a client that kept its
                // connection would hold its place, and one waiting on another loop's listener would wait for it).
                var outcomes = await Task.WhenAll(clients.Select(async waiting =>
                {
                    bool echoed = await Echoed(waiting, TimeSpan.FromSeconds(20));
                    waiting.Dispose();
                    return echoed;
                }));
                Assert.That(outcomes, Is.All.True, "a waiting client was not served once descriptors were free");
            }
            finally
            {
                foreach (var client in clients)
                    client.Dispose();
            }
            TestProcesses.SetDescriptorLimit(pid, open + 200);
        }, cancellation: cancellation);
    }

    private static Process? s_current;
    private static readonly System.Text.StringBuilder s_log = new();

    /// <summary>The server process <see cref="Run"/> is exercising (for /proc/PID/...).</summary>
    internal static int CurrentServerPid => s_current!.Id;

    /// <summary>Starts `iomux COMMAND` on a free loopback port with <paramref name="threads"/> loop threads, runs
    /// <paramref name="exercise"/> against the port (ended by <paramref name="cancellation"/>, the test's CancelAfter
    /// token, so a hung exercise fails naming the server's log), then checks that SIGTERM stops it with exit code 0.</summary>
    internal static async Task Run(string[] command, Func<int, Task> exercise, int threads = 2, CancellationToken cancellation = default)
    {
        int port = ProxyProcess.FreePort();
        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "IoMux.Cli")) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in command.Concat(["--port", port.ToString(), "--threads", threads.ToString()]))
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        s_current = process;
        s_log.Clear();
        try
        {
            var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
            process.ErrorDataReceived += (_, e) =>
            {
                if (e.Data is null)
                    return;
                lock (s_log)
                    s_log.AppendLine(e.Data);
                if (e.Data.Contains("listening on", StringComparison.Ordinal))
                    listening.TrySetResult(e.Data);
            };
            process.BeginErrorReadLine();
            var line = await listening.Task.WaitAsync(TimeSpan.FromSeconds(20));
            Assert.That(line, Does.Contain($"listening on 127.0.0.1:{port} with {threads} loop thread(s)"));
            try
            {
                await exercise(port).WaitAsync(cancellation);
            }
            catch (Exception e) when (e is not AssertionException)
            {
                lock (s_log)
                    throw new InvalidOperationException($"{e.GetType().Name}: {e.Message}\nserver log:\n{s_log}", e);
            }
            Assert.That(TestProcesses.Signal(process.Id, 15), Is.EqualTo(0));
            Assert.That(process.WaitForExit(10_000), Is.True, "SIGTERM did not stop the server");
            process.WaitForExit(); // flushes the redirected stderr into the log
            lock (s_log)
                Assert.That(process.ExitCode, Is.EqualTo(0), s_log.ToString());
        }
        finally
        {
            if (!process.HasExited)
                process.Kill();
        }
    }
}
