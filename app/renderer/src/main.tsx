import { StrictMode } from 'react'
import { createRoot } from 'react-dom/client'
import { App } from './App.js'
import { ParleyClient } from './client.js'
import { applyTheme, loadTheme } from './prefs.js'
import './styles.css'

applyTheme(loadTheme())
const client = ParleyClient.forPage()
client.start()
const root = document.getElementById('root')
if (root === null) throw new Error('index.html has no #root')
createRoot(root).render(<StrictMode><App client={client} /></StrictMode>)
